"""The SBOM's schema check of IRI references: the quick ASCII path answers as the full IRI parser does."""

from __future__ import annotations

import pytest
from jsonschema import Draft7Validator

from pipeline.provenance import sbom

REFERENCES = [
    "https://files.pythonhosted.org/packages/06/9a/cb7e/keystone-28.0.0.tar.gz",
    "https://review.opendev.org/c/openstack/nova/+/912345",
    "https://bugs.launchpad.net/nova/+bug/2054321",
    "git+https://opendev.org/openstack/keystone@2025.2#egg=keystone",
    "urn:cve:CVE-2024-40767",
    "patches/nova/2025.2/0001-fix.patch",
    "//host/path?q=1#frag",
    "",
    "http://[::1]:8080/x",
    "ht tp://example.org/",  # a space: neither
    "http://exa mple.org/",
    "http://[::1/",  # an unclosed IPv6 literal
    "http://example.org/%zz",  # a bad percent escape
    "a b",
]


def small_bom(url: str = "https://ok.example/x"):
    """A one-component SBOM whose component names ``url``."""
    from cyclonedx.model import ExternalReference, ExternalReferenceType, XsUri
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component

    bom = Bom()
    component = Component(name="demo", version="1.0")
    component.external_references.add(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(url)))
    bom.components.add(component)
    return bom, component


def test_ascii_iri_references_get_the_answer_of_the_iri_parser():
    checker = Draft7Validator.FORMAT_CHECKER
    sbom.render(small_bom()[0])  # rendering installs the quick ASCII check
    sbom.render(small_bom()[0])  # once is enough: no wrapper around the wrapper
    quick_check, _ = checker.checkers["iri-reference"]
    parser = quick_check.parser  # the checker jsonschema had (an earlier render in this process may have installed ours)
    assert not hasattr(parser, "parser")

    def parses(ref: str) -> bool:
        try:
            return bool(parser(ref))
        except ValueError:
            return False

    full = {ref: parses(ref) for ref in REFERENCES}
    quick = {ref: checker.conforms(ref, "iri-reference") for ref in REFERENCES}
    ipv6 = "http://[::1]:8080/x"  # valid (RFC 3986 3.2.2); rfc3987-syntax 1.1's parser refuses it
    assert quick == {**full, ipv6: True}
    assert [ref for ref, ok in quick.items() if not ok] == REFERENCES[-5:]
    assert checker.conforms("https://exämple.org/päth", "iri-reference")  # non-ASCII: the IRI parser still decides
    assert not checker.conforms("https://exämple.org/ päth", "iri-reference")


@pytest.mark.parametrize("bad", ["ht tp://files.example/x.tar.gz", "http://[::1/x"])
def test_an_sbom_with_a_bad_url_is_still_refused(bad):
    from cyclonedx.model import ExternalReference, ExternalReferenceType, XsUri

    bom, component = small_bom()
    assert '"https://ok.example/x"' in sbom.render(bom)
    component.external_references.add(ExternalReference(type=ExternalReferenceType.WEBSITE, url=XsUri(bad)))
    with pytest.raises(sbom.SbomError, match=r"not valid CycloneDX 1\.6"):
        sbom.render(bom)


def test_the_iri_grammar_is_loaded_only_for_a_non_ascii_reference():
    """rfc3987-syntax builds its parsers at import (1.4 s): a fresh process validating ASCII URLs never loads them."""
    import subprocess
    import sys

    script = """
import sys
from pipeline.provenance import sbom
sbom.preload().join()
from cyclonedx.model import ExternalReference, ExternalReferenceType, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component
bom = Bom()
component = Component(name="demo", version="1.0")
component.external_references.add(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri("https://ok.example/x")))
bom.components.add(component)
sbom.render(bom)
loaded = "rfc3987_syntax.syntax_helpers" in sys.modules
component.external_references.add(ExternalReference(type=ExternalReferenceType.WEBSITE, url=XsUri("ht tp://exämple.org/päth")))
try:
    sbom.render(bom)
    refused = False
except sbom.SbomError:
    refused = True
print(loaded, refused, "rfc3987_syntax.syntax_helpers" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
