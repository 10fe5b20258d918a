#!/usr/bin/env python3
"""RSS of a running sidecar under stalled SSE clients and 1 MiB webhooks (issue 14, item 8).

Start the sidecar with a config like this (no webhook secret, SSE writes that never time out so
the clients stay stalled), then run: python3 scripts/measure-sse-rss.py <sidecar pid> [port]

    listen: 127.0.0.1:39511
    metrics_listen: null
    upstream: {base_url: "http://127.0.0.1:39512", health_interval_ms: 0}
    status: {qr_poll_interval_ms: 0}
    webhook: {max_body_bytes: 2097152}
    sinks: [{type: sse, write_timeout_ms: 600000, max_clients: 5000}]

Each client has a 4 KB receive buffer and never reads. Prints VmRSS after each step and the
webhook POST latencies (a measurement, not a test)."""
import socket, time, json, sys, http.client, os
PORT=int(sys.argv[2]) if len(sys.argv) > 2 else 39511
pid=int(sys.argv[1])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return l.split()[1]+" kB"
def post(i):
    body=json.dumps({"event":"message","instanceId":"WASP-%d"%(i%10),"data":{"i":i,"t":"z"*(1024*1024-100)}})
    c=http.client.HTTPConnection("127.0.0.1",PORT,timeout=60)
    t=time.time(); c.request("POST","/api/wahub/webhook",body,{"content-type":"application/json"}); r=c.getresponse(); r.read(); c.close()
    return r.status, time.time()-t
print("start", rss())
for i in range(30): post(i)
print("after 30 x 1 MiB webhooks, no clients", rss())
socks=[]
t=time.time()
for k in range(1000):
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1",PORT))
    s.sendall(b"GET /api/stream?scope=global HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
print("1000 clients connected in %.2fs"%(time.time()-t))
time.sleep(3)
print("1000 stalled clients, each sent a capped initial", rss())
lat=[]
for i in range(30,60):
    st,d=post(i); lat.append(d)
time.sleep(3)
print("after 30 more x 1 MiB webhooks to 1000 stalled clients", rss(), "post latency max %.3fs median %.3fs"%(max(lat),sorted(lat)[len(lat)//2]))
# storm: 1000 more clients at once while posting
import threading
def storm():
    for k in range(1000):
        s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1",PORT)); s.sendall(b"GET /api/stream?scope=global HTTP/1.1\r\nHost: x\r\n\r\n"); socks.append(s)
th=threading.Thread(target=storm); th.start()
lat=[]
while th.is_alive():
    st,d=post(1000+len(lat)); lat.append(d)
th.join()
print("during a storm of 1000 more connections: %d webhooks, latency max %.3fs median %.3fs"%(len(lat),max(lat),sorted(lat)[len(lat)//2]))
time.sleep(3)
print("2000 stalled clients", rss())
