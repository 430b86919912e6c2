"""One API spelled two ways is one API: two jobs of one template running at once, the second giving the credential's
URL again with another spelling (host in capitals, default port, trailing slash), must see the first one's live
orphan guard and leave its deployment alone -- not take it for a stale one and cancel it (settings.normalise_api_url
feeds the guard's identity)."""

from __future__ import annotations

import threading

import pytest

from ansible_collections.stackify.retrace.tests.integration.awx.controller import OK_PLAYBOOK, Job, wait_for_file, waiting_playbook


@pytest.mark.parametrize("spelling", ["HTTP://LOCALHOST:{port}/", "http://Localhost:{port}"])
def test_a_live_job_is_not_cancelled_by_a_sibling_spelling_the_url_otherwise(controller, spelling):
    port = controller.emulator.url.rsplit(":", 1)[1]
    controller.credential_inputs["api_url"] = f"http://localhost:{port}"
    slow, started, release = waiting_playbook(controller.workdir, "first")
    results = {}
    first = threading.Thread(target=lambda: results.update(first=controller.launch(Job(job_id=1701), slow)))
    first.start()
    try:
        wait_for_file(started)
        results["second"] = controller.launch(Job(job_id=1702), OK_PLAYBOOK,
                                              template_extra_vars={"retrace_api_url": spelling.format(port=port)})
    finally:
        release.touch()
        first.join(120)
    second = " ".join(results["second"].stdout.split())
    assert [(entry["action"], entry["status"]) for entry in controller.emulator.requests()] == [
        ("start", 202), ("start", 409), ("complete", 202)], second
    assert results["first"].status == results["second"].status == "successful"
    assert "cancelling it" not in second and "Retrace refused to start deployment" in second
