# Creates 200 (or COUNT) idle sandboxes through agentboxd's unix socket, reports memory per
# sandbox (MemAvailable drop and PSS of the guests and jail helpers), then destroys them.
# Usage: python3 bench/idle_sandboxes.py /path/to/agentboxd.sock [COUNT]
import socket, json, os, time, glob
import sys
S=sys.argv[1] if len(sys.argv) > 1 else "/run/agentbox/agentboxd.sock"
COUNT=int(sys.argv[2]) if len(sys.argv) > 2 else 200
def call(method, path, body=""):
    s=socket.socket(socket.AF_UNIX); s.connect(S)
    b=body.encode()
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Length: {len(b)}\r\nConnection: close\r\n\r\n".encode()+b)
    data=b""
    while True:
        c=s.recv(65536)
        if not c: break
        data+=c
    s.close()
    head,_,body=data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
def meminfo():
    m={}
    for l in open("/proc/meminfo"):
        k,v=l.split(":"); m[k]=int(v.split()[0])
    return m
def pss_of(names):
    tot=0; n=0
    for p in glob.glob("/proc/[0-9]*"):
        try:
            comm=open(p+"/comm").read().strip()
            if comm in names:
                for l in open(p+"/smaps_rollup"):
                    if l.startswith("Pss:"): tot+=int(l.split()[1]); n+=1
        except Exception: pass
    return tot, n
before=meminfo()["MemAvailable"]; p0,n0=pss_of({"agentbox-guest","agentbox-jail","guest"})
ids=[]; t=time.time(); lat=[]
for i in range(COUNT):
    a=time.time(); st,b=call("POST","/v1/sandboxes",'{"ttl_s":900}'); lat.append((time.time()-a)*1000)
    if st!=201: print("create failed",st,b[:200]); break
    ids.append(json.loads(b)["data"]["id"])
el=time.time()-t
time.sleep(3)
after=meminfo()["MemAvailable"]; p1,n1=pss_of({"agentbox-guest","agentbox-jail","guest"})
lat.sort()
print(f"created {len(ids)} in {el:.1f}s, create p50 {lat[len(lat)//2]:.1f} ms p99 {lat[int(len(lat)*0.99)-1]:.1f} ms")
print(f"MemAvailable drop {(before-after)/1024:.1f} MiB = {(before-after)/1024/len(ids):.2f} MiB/sandbox")
print(f"PSS of guests+helpers {(p1-p0)/1024:.1f} MiB over {n1-n0} processes = {(p1-p0)/1024/len(ids):.2f} MiB/sandbox")
t=time.time()
for i in ids: call("DELETE","/v1/sandboxes/"+i)
print(f"destroyed {len(ids)} in {time.time()-t:.1f}s")
