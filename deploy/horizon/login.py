"""Logs in to horizon through its form as the client's OS_USERNAME/OS_PASSWORD, as a browser
does, and prints JSON: the page the login lands on, its title, and the compressed stylesheet
the login page names (fetched: it must be served)."""
import json
import os
import re
import sys

import requests

base = sys.argv[1].rstrip("/")
session = requests.Session()
login = session.get(f"{base}/auth/login/", timeout=60)
login.raise_for_status()
css = re.findall(r'href="(/static/dashboard/css/[\w.]+\.css)"', login.text)  # output.<hash>.css
if not css or session.get(base + css[0], timeout=30).status_code != 200:
    sys.exit(f"the login page names no compressed stylesheet that is served: {css}")
form = {"csrfmiddlewaretoken": session.cookies["csrftoken"], "username": os.environ["OS_USERNAME"],
        "password": os.environ["OS_PASSWORD"], "next": "/project/"}
region = re.search(r'name="region"[^>]*value="([^"]*)"', login.text) or \
    re.search(r'<select[^>]*name="region".*?<option[^>]*value="([^"]*)"', login.text, re.S)
if region:
    form["region"] = region.group(1)
page = session.post(f"{base}/auth/login/", data=form, headers={"Referer": f"{base}/auth/login/"}, timeout=120)
title = re.search(r"<title>\s*(.*?)\s*-", page.text, re.S)
print(json.dumps({"status": page.status_code, "page": page.url[len(base):], "css": css[0],
                  "title": title.group(1).strip() if title else None}))
