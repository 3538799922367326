"""The API handlers use: Socket, Handlers, Request, Refuse, the out-of-band sends and Publisher."""
