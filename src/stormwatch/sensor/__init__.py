"""The honeypot sensor: persona, per-connection sessions (sans-I/O), asyncio transports, spool."""
