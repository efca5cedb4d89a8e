"""The asyncio TCP runtime: framing, handshake and authentication, peer links, the server.

It holds no protocol logic: connections, frames and timers become ``Event``s for
``Node.handle``, and the effects it returns are carried out in order (see ``server``).
"""
