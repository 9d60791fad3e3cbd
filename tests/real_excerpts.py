"""Short excerpts of real output in shapes the corpus (fixtures/realworld) has no paste of yet,
each with where it is from: the unit tests of those shapes read them, and the registry's tests
check the row shapes stay disjoint on them as on the corpus."""

# ruff: noqa: E501 -- rows are kept as wide as the tools print them

from __future__ import annotations

# A blog post on PowerShell pipelines ("PowerShell 管道", 2025-10-11), found by code search:
# Get-NetTCPConnection | Where-Object { $_.OwningProcess -eq $myPid }, as printed.
PS_TABLE = """\
PS C:\\Users\\me> Get-NetTCPConnection | Where-Object { $_.OwningProcess -eq $myPid }

LocalAddress                        LocalPort RemoteAddress                       RemotePort State       AppliedSetting OwningProcess
------------                        --------- -------------                       ---------- -----       -------------- -------------
0.0.0.0                             55113     0.0.0.0                             0          Bound                      20756
0.0.0.0                             52461     0.0.0.0                             0          Bound                      20756
172.16.0.10                         55113     47.106.194.220                      443        Established Internet       20756
"""

# A French Windows-forensics notes page, `Get-NetTCPConnection -State Established` in a window
# too narrow for OwningProcess, long IPv6 addresses cut with '...'.
PS_NARROW = """\
PS C:\\Users\\kogay> Get-NetTCPConnection -State Established

LocalAddress                        LocalPort RemoteAddress                       RemotePort State       AppliedSetting
------------                        --------- -------------                       ---------- -----       --------------
2a01:cb19:18c:c700:ec96:8a3e:723... 60108     2606:4700:90:0:f22e:fbec:5bed:a9b9  443        Established Internet
::1                                 58986     ::1                                 5426       Established Internet
192.168.1.18                        60112     20.189.173.26                       443        Established Internet
"""

# fixtures/realworld/threads/github-httptoolkit-764_...: Group-Object State, OwningProcess
PS_GROUPED = """\
PS C:\\Users\\Matt> Get-NetTCPConnection |
>>   Group-Object -Property State, OwningProcess |
>>   Sort-Object Count -Desc |
>>   Select-Object -First 15 Count, Name,
>>     @{n='ProcessName';e={Get-Process -Id ($_.Name.Split(',')[-1]) | % ProcessName}}

Count Name               ProcessName
----- ----               -----------
51382 Bound, 44688       node
   66 Bound, 26924       chrome
   60 Established, 26924 chrome
   46 TimeWait, 0        Idle
   17 Listen, 7292       zerotier...
   12 CloseWait, 44688   node
"""


# ss -s of iproute2 6.1.0, on the machine these tests were written on (TCP: line as printed).
SS_SUMMARY_NEW = """\
$ ss -s
Total: 16
TCP:   196 (estab 0, closed 195, orphaned 20, timewait 137)

Transport Total     IP        IPv6
RAW	  0         0         0
UDP	  0         0         0
TCP	  1         1         0
INET	  1         1         0
FRAG	  0         0         0
"""

# ss -s of an older iproute2 (synrecv, "timewait N/M", ports), from a Chinese ss tutorial on a
# CentOS host, found by code search.
SS_SUMMARY_OLD = """\
[root@renwolecom ~]# ss -s
Total: 798 (kernel 1122)
TCP:   192 (estab 99, closed 81, orphaned 0, synrecv 0, timewait 1/0), ports 0

Transport Total     IP        IPv6
*         1122      -         -
RAW       1         0         1
UDP       0         0         0
TCP       111       59        52
"""

# ss -tinm of iproute2 6.1.0 on Linux 6.18, captured on the machine these tests were written
# on: a sender (46774) stalled by a receiver (44573) with a 4 KB receive buffer that never
# reads; trailing blanks dropped.
SS_TINM = """\
# ss -tinm '( sport = :44573 or dport = :44573 )'
State Recv-Q Send-Q  Local Address:Port  Peer Address:Port Process
ESTAB 0      4092625     127.0.0.1:46774    127.0.0.1:44573
\t skmem:(r0,rb131072,t0,tb4194304,f2607,w4195793,o0,bl0,d0) bbr wscale:10,10 rto:1632 backoff:3 rtt:0.035/0.013 mss:32741 pmtu:65535 rcvmss:536 advmss:65483 cwnd:1 bytes_sent:196446 bytes_retrans:130964 bytes_acked:32742 segs_out:8 segs_in:7 data_segs_out:6 bbr:(bw:7275765632bps,mrtt:0.035,pacing_gain:2.88672,cwnd_gain:2.88672) send 7483657143bps lastsnd:652 lastrcv:2340 lastack:652 pacing_rate 213871799840bps delivery_rate 7275777776bps delivered:2 app_limited busy:2340ms rwnd_limited:416ms(17.8%) unacked:1 retrans:1/4 lost:1 rcv_space:65495 rcv_ssthresh:65495 notsent:4059884 minrtt:0.035
ESTAB 32741  0           127.0.0.1:44573    127.0.0.1:46774
\t skmem:(r33573,rb8192,t0,tb3939840,f3291,w0,o0,bl0,d5) bbr wscale:10,10 rto:200 rtt:0.029/0.014 ato:40 mss:32768 pmtu:65535 rcvmss:32741 advmss:65483 cwnd:10 bytes_received:32741 segs_out:6 segs_in:8 data_segs_in:6 bbr:(bw:0bps,mrtt:0.029) send 90394482759bps lastsnd:2340 lastrcv:2340 lastack:2340 pacing_rate 258333973752bps delivered:1 app_limited rcv_space:7968 rcv_ssthresh:7968 minrtt:0.029 snd_wnd:65536
"""

# lsof 4.99.7 (built from lsof-org/lsof at 6379888, the release with -J/-j) on Linux 6.18, on
# the machine these tests were written on: one process holding a listener with two
# connections queued (Recv-Q 2), two clients, and one accepted connection with 5 bytes unread;
# then ss -tane of the same sockets at the same moment (the kernel's view to compare with).
# 4.99.7's JSON has no "name" for sockets: no addresses.
LSOF_J = """\
$ lsof -J -nP -a -p 22482 -iTCP
{"lsof_version":"4.99.7","processes":[{"pid":22482,"pgid":22481,"ppid":22481,"command":"python3","uid":0,"login":"root","files":[{"fd":"3","access":"u","type":"IPv4","device":"7201652","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"LISTEN","recv_queue":2,"send_queue":0}},{"fd":"4","access":"u","type":"IPv4","device":"7201653","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":0,"send_queue":0}},{"fd":"5","access":"u","type":"IPv4","device":"7201654","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":0,"send_queue":0}},{"fd":"6","access":"u","type":"IPv4","device":"7201655","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":0,"send_queue":0}},{"fd":"7","access":"u","type":"IPv4","device":"7201656","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":5,"send_queue":0}}]}]}
"""
LSOF_JL = """\
$ lsof -j -nP -a -p 22482 -iTCP
{"pid":22482,"pgid":22481,"ppid":22481,"command":"python3","uid":0,"login":"root","fd":"3","access":"u","type":"IPv4","device":"7201652","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"LISTEN","recv_queue":2,"send_queue":0}}
{"pid":22482,"pgid":22481,"ppid":22481,"command":"python3","uid":0,"login":"root","fd":"4","access":"u","type":"IPv4","device":"7201653","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":0,"send_queue":0}}
{"pid":22482,"pgid":22481,"ppid":22481,"command":"python3","uid":0,"login":"root","fd":"5","access":"u","type":"IPv4","device":"7201654","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":0,"send_queue":0}}
{"pid":22482,"pgid":22481,"ppid":22481,"command":"python3","uid":0,"login":"root","fd":"6","access":"u","type":"IPv4","device":"7201655","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":0,"send_queue":0}}
{"pid":22482,"pgid":22481,"ppid":22481,"command":"python3","uid":0,"login":"root","fd":"7","access":"u","type":"IPv4","device":"7201656","offset":"0","protocol":"TCP","flags":"RW,CX","tcp_info":{"state":"ESTABLISHED","recv_queue":5,"send_queue":0}}
"""
LSOF_SS = """\
$ ss -tane '( sport = :47767 or dport = :47767 )'
State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN 2      2          127.0.0.1:47767      0.0.0.0:*     ino:7201652 sk:239860 cgroup:/ <->
ESTAB  5      0          127.0.0.1:47767    127.0.0.1:51710 ino:7201656 sk:239861 cgroup:/ <->
ESTAB  0      0          127.0.0.1:47767    127.0.0.1:51714 ino:0 sk:239862 cgroup:/ <->
ESTAB  0      0          127.0.0.1:51710    127.0.0.1:47767 ino:7201653 sk:239863 cgroup:/ <->
ESTAB  0      0          127.0.0.1:51714    127.0.0.1:47767 ino:7201654 sk:239864 cgroup:/ <->
ESTAB  0      0          127.0.0.1:51724    127.0.0.1:47767 ino:7201655 sk:239865 cgroup:/ <->
ESTAB  0      0          127.0.0.1:47767    127.0.0.1:51724 ino:0 sk:239866 cgroup:/ <->
"""

# macOS netstat -anvp tcp, from the accepted answer (by grgarside) to "How can I list my open
# network ports with netstat?", apple.stackexchange.com/questions/117644, as quoted there.
MACOS_V = """\
$ netstat -anvp tcp | awk 'NR<3 || /LISTEN/'
Active Internet connections (including servers)
Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)     rhiwat shiwat    pid   epid  state    options
tcp46      0      0  *.62981                *.*                    LISTEN      131072 131072  34548      0 0x0100 0x00000006
"""

# A Korean blog post on finding the process on a port (netstat -vanp tcp | grep 8080): the row
# alone, as grep prints it, without the header.
MACOS_V_GREP = """\
$ netstat -vanp tcp | grep 8080
tcp4       0      0  *.8080                 *.*                    LISTEN      131072 131072  41657      0 0x0000 0x00000006
"""

# Windows netstat -ao piped through find, so without its header, with host names and service
# names (Windows XP/2003), from a petri.co.il article on finding the process behind a port.
WINDOWS_NO_HEADER = """\
C:\\WINDOWS>netstat -ao |find /i "listening"
TCP   pro1:epmap   pro1.dpetri.net:0   LISTENING   860
TCP   pro1:microsoft-ds   pro1.dpetri.net:0   LISTENING   4
TCP   pro1:1025   pro1.dpetri.net:0   LISTENING   908
TCP   pro1:3389   pro1.dpetri.net:0   LISTENING   908
"""

# Windows netstat -a (names resolved): rows of a troubleshooting write-up found by code search.
WINDOWS_NAMES = """\
  TCP    192.168.9.196:60469    lb-140-82-113-25-iad:https  ESTABLISHED
  TCP    192.168.9.196:64824    a23-40-158-218:http    ESTABLISHED
  TCP    192.168.9.196:64853    LenovoSRV:epmap        TIME_WAIT
  TCP    192.168.9.196:64854    LenovoSRV:49668        TIME_WAIT
"""

# Every excerpt above, for the registry's checks on real rows.
ALL: tuple[str, ...] = (
    PS_TABLE,
    PS_NARROW,
    PS_GROUPED,
    SS_SUMMARY_NEW,
    SS_SUMMARY_OLD,
    SS_TINM,
    LSOF_J,
    LSOF_JL,
    LSOF_SS,
    MACOS_V,
    MACOS_V_GREP,
    WINDOWS_NO_HEADER,
    WINDOWS_NAMES,
)
