"""Pure protocol codecs (no I/O): NetBIOS, SMB1, SMB2, NTLMSSP/SPNEGO, DCE/RPC and NDR.

Bytes in, typed frozen messages out; messages in, bytes out. Sockets, clocks and randomness are
injected by the caller (the sensor's transports, or the pcap replay). The only exceptions that
may escape a codec are those of :mod:`stormwatch.protocols.errors`; anything else is a bug.
"""
