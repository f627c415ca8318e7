"""DCE/RPC connection-oriented protocol ([C706] chapter 12, [MS-RPCE] 2.2.2) and NDR ([C706]
chapter 14), for SMB named pipes and TCP 135 alike.

    pdu          parse the PDUs: Header, Bind/AlterContext, BindAck/AlterContextResp, BindNak,
                 Request, Response, Fault, Auth3, ControlPdu; parse_pdu, parse_header
    build        build them, and negotiate presentation contexts the way Windows 2000/XP do
    reassembly   DceRpcStream: byte stream → complete PDUs, fragments joined per call_id, limits
    interfaces   the UUID/opnum table (srvsvc, wkssvc, browser, lsarpc, dssetup, samr, epmapper,
                 svcctl, the DCOM activators, ...) and the mixed-endian UUID helpers
    ndr          NdrReader (bounded, both byte orders) and NdrWriter (little-endian)
    calls        request-stub decoders for the exploit-relevant operations; decode_request
    rpcss        the RPCSS ones: RemoteActivation (MS03-026) and ept_map
    responses    response stubs a benign client needs to complete (share list, server info, ...)
"""
