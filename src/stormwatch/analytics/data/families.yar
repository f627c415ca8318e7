/*
 * YARA rules over kept exploit payloads (stormwatch.analytics.family_rules): a rule names its
 * family in meta "family" (else the rule name is the family). Tried after the fingerprint rules.
 *
 * These describe the decoder stubs of the demo's *mimic* families (stormwatch.demo.families):
 * jmp/call/pop GetPC with a single-byte XOR or ADD loop, and an fnstenv GetPC with a dword XOR
 * loop, each with the family's key where it has a fixed one.
 */

rule mocbot_xor8_99
{
    meta:
        family = "Mocbot"
        description = "jmp/call/pop GetPC, xor byte [esi], 0x99 loop"
    strings:
        $stub = { EB 0E 5E 31 C9 B1 ?? 80 36 99 46 E2 FA EB 06 90 E8 ED FF FF FF }
    condition:
        $stub
}

rule mocbot_b_xor8_9a
{
    meta:
        family = "Mocbot"
        description = "Mocbot.B: the same stub, key 0x9a"
    strings:
        $stub = { EB 0E 5E 31 C9 B1 ?? 80 36 9A 46 E2 FA EB 06 90 E8 ED FF FF FF }
    condition:
        $stub
}

rule randex_xor8_bc
{
    meta:
        family = "Randex"
    strings:
        $stub = { EB 0E 5E 31 C9 B1 ?? 80 36 BC 46 E2 FA }
    condition:
        $stub
}

rule spybot_xor8_d5
{
    meta:
        family = "Spybot"
    strings:
        $stub = { EB 0E 5E 31 C9 B1 ?? 80 36 D5 46 E2 FA }
    condition:
        $stub
}

rule ircbot_add8
{
    meta:
        family = "IRCBot"
        description = "jmp/call/pop GetPC, add byte [esi], key (a key per bot)"
    strings:
        $stub = { EB 0E 5E 31 C9 B1 ?? 80 06 ?? 46 E2 FA }
    condition:
        $stub
}

rule rbot_fnstenv_xor32
{
    meta:
        family = "Rbot"
    strings:
        $stub = { D9 EE D9 74 24 F4 5B 31 C9 B1 ?? 81 73 17 BA FE A1 DC 83 EB FC E2 F4 }
    condition:
        $stub
}

rule sdbot_fnstenv_xor32
{
    meta:
        family = "Sdbot"
    strings:
        $stub = { D9 EE D9 74 24 F4 5B 31 C9 B1 ?? 81 73 17 C7 BF AD 9B 83 EB FC E2 F4 }
    condition:
        $stub
}
