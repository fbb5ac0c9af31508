"""RFC 6455 conformance suite, modelled on the Autobahn test suite (see conftest.py).

Families: 00 handshake, 01 framing, 02 ping/pong, 03 reserved bits, 04 opcodes,
05 fragmentation, 06 UTF-8, 07 close handling, 09 large/many messages, 10 size limits
and masking. The raw client is tests/support/rawws.py.
"""
