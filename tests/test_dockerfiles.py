"""The `#@` expansions of the shipped service Dockerfile: library blocks, flags and byte-code steps."""

from __future__ import annotations

import pytest

from pipeline.dockerfiles import TOOL_FILES, LibrarySlot, render
from pipeline.errors import ConfigError

TEMPLATE = (TOOL_FILES / "service.Dockerfile").read_text()


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def test_each_tree_is_added_then_compiled_and_the_service_comes_last():
    rendered = render(TEMPLATE, [LibrarySlot("oslo.messaging", "17.1.0")], {"dependencies": True},
                      {"service": "RUN compile-service", "oslo.messaging": "RUN compile-oslo"})
    final = instructions(rendered)[instructions(rendered).index("FROM ${RELEASE_BASE}"):]
    assert final == ["FROM ${RELEASE_BASE}", "USER root", "COPY --from=layer-dependencies /layer/ /",
                     "ADD trees/oslo.messaging/layer.tar /", "RUN compile-oslo",
                     "ADD trees/service/layer.tar /", "RUN compile-service", "USER openstack"]
    check = instructions(rendered)[instructions(rendered).index("FROM ${RELEASE_BUILD} AS check"):]
    assert check[:5] == ["FROM ${RELEASE_BUILD} AS check", "COPY --from=layer-dependencies /layer-meta/ /",
                         "ADD trees/oslo.messaging/metadata.tar /", "ADD trees/service/metadata.tar /", "RUN uv pip check"]
    assert not [line for line in rendered.splitlines() if line.startswith("#@")]


def test_without_libraries_or_dependencies_only_the_service_is_added():
    rendered = instructions(render(TEMPLATE, [], {"dependencies": False}, {"service": "RUN compile-service"}))
    assert not [line for line in rendered if "dependencies" in line or "oslo" in line]
    assert rendered[-3:] == ["ADD trees/service/layer.tar /", "RUN compile-service", "USER openstack"]


def test_a_byte_code_step_for_a_tree_the_image_does_not_install_names_the_file():
    with pytest.raises(ConfigError) as error:
        render("FROM x\n#@bytecode oslo.config\n", [], {}, {"service": "RUN c"}, where="dockerfiles/nova.Dockerfile")
    assert "dockerfiles/nova.Dockerfile asks for the byte code of 'oslo.config'" in str(error.value)
    assert "service" in error.value.hint
