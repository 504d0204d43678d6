"""Asks designate-mdns (DNS over UDP, port 5354) for a name and type; prints the answer as JSON."""
import json
import socket
import sys

import dns.message
import dns.query

address = socket.gethostbyname("designate-mdns")
reply = dns.query.udp(dns.message.make_query(sys.argv[1], sys.argv[2]), address, port=5354, timeout=5)
answers = [item.to_text() for rrset in reply.answer for item in rrset]
print(json.dumps({"rcode": dns.rcode.to_text(reply.rcode()), "answer": answers[0] if answers else None}))
