"""Network clients: the Platform API (REST + WebSocket) and the dstack VMM (pRPC)."""
