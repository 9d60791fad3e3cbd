from tcphealth.cli import run

run()
