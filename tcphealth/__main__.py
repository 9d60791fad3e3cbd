from tcphealth.cli import main

main()
