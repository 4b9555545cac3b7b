"""Drives `agentwire mcp` with the official MCP Python client (stdio_client + ClientSession).

Usage: python mcp_client.py AGENTWIRE_BINARY BRAND ARG...   (ARG...: the options of `agentwire mcp`)
Prints one JSON object: the tools listed, what find_services, ask (with the
progress notifications it sent), each bad call and channels answered. A bad
call that the server answers with a JSON-RPC error instead of a tool result is
recorded as {"protocol_error": ...}; a server that dies makes the later calls fail.
"""
import asyncio
import json
import sys

from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client


def texts(result):
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


async def tool(session, name, arguments, **kw):
    try:
        r = await session.call_tool(name, arguments, **kw)
    except MCPError as e:
        return {"protocol_error": str(e)}
    return {"text": texts(r), "structured": r.structured_content, "error": bool(r.is_error)}


async def main():
    binary, brand, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    params = StdioServerParameters(command=binary, args=["mcp", *args])
    out = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            out["find"] = await tool(session, "find_services", {"query": "model per token"})
            progress = []

            async def on_progress(value, total, message):
                progress.append({"progress": value, "message": message})

            out["ask"] = await tool(
                session,
                "ask",
                {"brand": brand, "service": "assistant", "message": "Hello from MCP"},
                progress_callback=on_progress,
            )
            out["progress"] = progress
            bad = {
                "unknown_service": {"brand": brand, "service": "nosuch", "message": "x"},
                "not_an_account": {"brand": "Not An Account!", "service": "assistant", "message": "x"},
                "max_tokens_above_cap": {"brand": brand, "service": "assistant", "message": "x", "max_tokens": 100000},
                "missing_message": {"brand": brand, "service": "assistant"},
                "wrong_type": {"brand": brand, "service": "assistant", "message": "x", "max_tokens": "many"},
            }
            out["bad"] = {case: await tool(session, "ask", a) for case, a in bad.items()}
            # Still serving after every bad call.
            out["channels"] = await tool(session, "channels", {})
    print(json.dumps(out))


asyncio.run(main())
