"""ListStacks on heat-api-cfn, authenticated with a keystone token (the client's OS_* settings);
prints the stack named smoke-stack as JSON.  X-Auth-User tells heat's ec2token middleware that the
request carries no AWS signature on purpose: it hands it to keystonemiddleware instead."""
import json
import os
import urllib.request
import xml.etree.ElementTree as ET

import openstack

token = openstack.connect().session.get_token()
headers = {"X-Auth-Token": token, "X-Auth-User": os.environ["OS_USERNAME"]}
request = urllib.request.Request("http://heat-api-cfn:8000/v1/?Action=ListStacks", headers=headers)
with urllib.request.urlopen(request, timeout=30) as response:
    root = ET.fromstring(response.read())
stacks = [{child.tag.split("}")[-1]: child.text for child in member}
          for member in root.iter() if member.tag.split("}")[-1] == "member"]
print(json.dumps(stacks))
