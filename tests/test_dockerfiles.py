"""The `#@` expansions of the shipped service Dockerfile: library blocks and flags."""

from __future__ import annotations

from pipeline.image.dockerfiles import TOOL_FILES, LibrarySlot, render

TEMPLATE = (TOOL_FILES / "service.Dockerfile").read_text()


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def test_each_tree_is_one_added_archive_and_the_service_comes_last():
    rendered = render(TEMPLATE, [LibrarySlot("oslo.messaging", "17.1.0")], {"dependencies": True})
    final = instructions(rendered)[instructions(rendered).index("FROM ${RELEASE_BASE}"):]
    assert final == ["FROM ${RELEASE_BASE}", "ADD runtime.tar /", "COPY --from=layer-dependencies /layer/ /",
                     "ADD trees/oslo.messaging/layer.tar /", "ADD trees/service/layer.tar /"]
    check = instructions(rendered)[instructions(rendered).index("FROM ${RELEASE_BUILD} AS check"):]
    assert check[:5] == ["FROM ${RELEASE_BUILD} AS check", "COPY --from=layer-dependencies /layer-meta/ /",
                         "ADD trees/oslo.messaging/metadata.tar /", "ADD trees/service/metadata.tar /", "RUN uv pip check"]
    assert not [line for line in rendered.splitlines() if line.startswith("#@")]


def test_without_libraries_or_dependencies_only_the_service_is_added():
    rendered = instructions(render(TEMPLATE, [], {"dependencies": False}))
    assert not [line for line in rendered if "dependencies" in line or "oslo" in line]
    assert rendered[-3:] == ["FROM ${RELEASE_BASE}", "ADD runtime.tar /", "ADD trees/service/layer.tar /"]
