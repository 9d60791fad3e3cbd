"""The scale benchmark: a loopback load generator and a runner that times tcphealth against
ss, netstat, lsof and psutil on the same sockets (``make bench N=100000``)."""
