"""Drives cairnd with python-bitcoinrpc 1.0 (AuthServiceProxy), exactly as a Bitcoin Core user
would. Usage: python3 python_bitcoinrpc.py URL_WITH_CREDENTIALS MINER_ADDRESS
Prints one JSON line of what it saw; exits non-zero on any failure."""
import json
import sys

from bitcoinrpc.authproxy import AuthServiceProxy, JSONRPCException

url, address = sys.argv[1], sys.argv[2]
rpc = AuthServiceProxy(url, timeout=30)
seen = {}
seen["getblockcount"] = rpc.getblockcount()
seen["getbestblockhash"] = rpc.getbestblockhash()
seen["getblockhash0"] = rpc.getblockhash(0)
block = rpc.getblock(seen["getblockhash0"])
seen["getblock_height"] = block["height"]
seen["chain"] = rpc.getblockchaininfo()["chain"]
seen["batch"] = rpc.batch_([["getblockcount"], ["getblockhash", 0]])
try:
    rpc.nosuchmethod()
    seen["unknown"] = None
except JSONRPCException as e:
    seen["unknown"] = e.error["code"]
seen["generated"] = len(rpc.generatetoaddress(2, address))
seen["after"] = rpc.getblockcount()
print(json.dumps(seen))
