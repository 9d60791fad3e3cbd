"""tcphealth: what is wrong with the TCP connections on this host, and who is to blame."""

__version__ = "0.1.0"
