"""The runs page in a real headless browser (Debian's chromium, driven by selenium) against a
real `lamrunner serve` process polling the project's job API (samples/jobapi.py), both on
127.0.0.1: start jobs, watch their attempts appear without a reload, open a run and see its
timeline, cancel it with the button (and the job API gets no more polls), filter by status.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
JOB_KEY = "jobapi-key-for-page-test"
WAIT = 20  # seconds: generous, for a loaded 2-core machine


class Started:
    """A subprocess with its stderr in a file; `stop` ends it and closes both."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=ROOT
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


def _started(args: list[str], env: dict[str, str], log: Path, pattern: str) -> tuple[Any, str]:
    """A subprocess and the first stdout line matching `pattern` (its URL)."""
    started = Started(args, env, log)
    proc = started.proc
    deadline = time.monotonic() + WAIT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(pattern, line)
        if found:
            return started, found.group(1)
    started.stop()
    pytest.fail(f"{args[1]} did not start: {log.read_text()[-2000:]}")


def _job_api(root: Path, phase_seconds: float) -> tuple[Started, dict[str, Any]]:
    log = root / "access.log"
    args = [sys.executable, "samples/jobapi.py", "--port", "0"]
    args += ["--phase-seconds", str(phase_seconds), "--api-key", JOB_KEY]
    proc, url = _started(args, dict(os.environ), log, r"listening on (http://\S+)")
    return proc, {"url": url, "log": log}


@pytest.fixture(scope="module")
def job_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Jobs that stay pending then processing for a minute: they poll until canceled."""
    proc, api = _job_api(tmp_path_factory.mktemp("jobapi"), 30)
    yield api
    proc.stop()


@pytest.fixture(scope="module")
def quick_job_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Jobs that end within a second (a `simulate: failed` one fails)."""
    proc, api = _job_api(tmp_path_factory.mktemp("quickjobapi"), 0.2)
    yield api
    proc.stop()


FAIL_WHEN = "\"(ctx) => ['failed','canceled','expired'].includes(ctx.response.status)\""


def _workflow(root: Path, failing: bool = False) -> Path:
    """page-poll: submit a job, poll it every 200 ms until it completes; `failing`: the poll
    fails when the job does, and a third step reports."""
    fail_when = f"            'failWhen': {FAIL_WHEN},\n" if failing else ""
    (root / "wait.py").write_text(
        "def transform(data):\n"
        "    return {'lam.httpRequest': {'method': 'GET',\n"
        "        'url': '<<config.jobApiUrl>>/api/jobs/{{jobId}}',\n"
        "        'pathParams': {'jobId': data['step_1']['response']['job_id']},\n"
        "        'headers': {'X-API-Key': '<<config.apiKey>>'},\n"
        "        'loopUntil': {'condition': \"(ctx) => ctx.response.status === 'completed'\",\n"
        f"{fail_when}"
        "            'maxAttempts': 2000, 'strategy': 'fixed', 'initialDelay': '200ms',\n"
        "            'timeout': '300s'}}}\n"
    )
    (root / "report.py").write_text("def transform(data):\n    return {'done': True}\n")
    path = root / "page-poll.yaml"
    path.write_text(
        "name: page-poll\n"
        "config:\n  jobApiUrl: ${JOBAPI_URL}\n  apiKey: ${JOBAPI_KEY}\n"
        "steps:\n"
        f"  - name: submit_job\n    handler: {ROOT / 'handlers' / 'submit_job.py'}\n"
        "  - name: wait_for_job\n    handler: wait.py\n"
        + ("  - name: report\n    handler: report.py\n" if failing else "")
    )
    return path


def _serve(
    root: Path, job_api: dict[str, Any], *extra: str, failing: bool = False, **env: str
) -> tuple[Started, str]:
    environ = {**os.environ, "JOBAPI_URL": job_api["url"], "JOBAPI_KEY": JOB_KEY, **env}
    workflow = _workflow(root, failing)
    args = [sys.executable, "-m", "lamrunner", "serve", str(workflow), "--port", "0"]
    args += ["--store", str(root / "store.sqlite3"), *extra]
    return _started(args, environ, root / "serve.log", r'"listening": "(http://[^"]+)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, job_api: dict[str, Any]) -> Iterator[str]:
    proc, url = _serve(tmp_path_factory.mktemp("serve"), job_api)
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            f"the runs page is tested in Debian's chromium ({CHROMIUM}) with its chromedriver "
            f"({CHROMEDRIVER}); `bash scripts/bootstrap.sh` installs them"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def submit(server: str, body: dict[str, Any], **headers: str) -> str:
    request = urllib.request.Request(
        f"{server}/workflow/execute/page-poll/async",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202
        return str(json.load(resp)["job_id"])


def page_json(server: str, path: str) -> Any:
    with urllib.request.urlopen(f"{server}{path}", timeout=10) as resp:
        return json.load(resp)


def until(driver: webdriver.Chrome, check: Any, what: str) -> Any:
    """Wait for `check`; the live page re-renders, so an element read mid-render is retried."""
    return WebDriverWait(
        driver, WAIT, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    ).until(lambda d: check(d), message=f"waited {WAIT} s for {what}")


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    """The text of every element `css` selects, read at one moment (the page re-renders)."""
    found = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);", css
    )
    return [str(text) for text in found]


def cell(driver: webdriver.Chrome, job_id: str, name: str) -> str:
    found = texts(driver, f'tr[data-job-id="{job_id}"] td.{name}')
    return found[0] if found else ""


def click(driver: webdriver.Chrome, element_id: str) -> None:
    until(driver, lambda d: d.find_element(By.ID, element_id).click() or True, element_id)


def attempts_shown(driver: webdriver.Chrome, job_id: str) -> int:
    text = cell(driver, job_id, "attempts")
    return int(text) if text.isdigit() else -1


def job_api_gets(job_api: dict[str, Any], remote_id: str) -> int:
    return job_api["log"].read_text().count(f"GET /api/jobs/{remote_id}")


@pytest.fixture(scope="module")
def first_job(server: str) -> str:
    return submit(server, {"datasetId": "ds-page-1"})


def test_the_list_shows_a_job_whose_attempts_grow_without_a_reload(
    browser: webdriver.Chrome, server: str, first_job: str
) -> None:
    browser.get(f"{server}/")
    until(browser, lambda d: attempts_shown(d, first_job) >= 1, "the job's row")
    browser.execute_script("window.__sameDocument = true;")
    seen = attempts_shown(browser, first_job)
    until(browser, lambda d: attempts_shown(d, first_job) >= seen + 3, "more attempts")
    assert browser.execute_script("return window.__sameDocument === true;")  # no reload
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{first_job}"]')
    assert "page-poll" in row.text and "processing" in row.text


def test_a_run_page_shows_its_timeline_live_and_cancel_stops_the_polls(
    browser: webdriver.Chrome, server: str, first_job: str, job_api: dict[str, Any]
) -> None:
    browser.get(f"{server}/")
    link = until(browser, lambda d: d.find_element(By.LINK_TEXT, first_job), "the run's link")
    link.click()
    until(browser, lambda d: d.current_url.endswith(f"/runs/{first_job}"), "the run's page")
    timeline = 'li[data-step="step_2"] ol.timeline li.attempt'
    until(browser, lambda d: len(texts(d, timeline)) >= 2, "attempts")
    count = len(texts(browser, timeline))
    until(browser, lambda d: len(texts(d, timeline)) > count, "attempts appearing live")
    first = texts(browser, timeline)[0]
    assert first.startswith("#1 200") and "wait 200 ms" in first
    steps = texts(browser, "ol.steps h3")
    assert steps == ["1. submit_job", "2. wait_for_job"]

    remote = page_json(server, f"/api/page/runs/{first_job}")["steps"][0]["result"]
    remote_id = remote["response"]["job_id"]
    click(browser, "cancel-button")  # asked to confirm: "no" leaves the run alone
    until(browser, lambda d: d.switch_to.alert, "the confirmation")
    assert first_job in browser.switch_to.alert.text
    browser.switch_to.alert.dismiss()
    seen = len(texts(browser, timeline))
    until(browser, lambda d: len(texts(d, timeline)) > seen, "polls going on after a no")
    assert "processing" in "".join(texts(browser, "#run-status"))
    click(browser, "cancel-button")
    until(browser, lambda d: d.switch_to.alert, "the confirmation")
    browser.switch_to.alert.accept()
    until(browser, lambda d: "canceled" in "".join(texts(d, "#run-status")), "canceled")
    assert texts(browser, "#cancel-button") == []
    assert texts(browser, "#resume-button") == ["Resume"]
    polls = job_api_gets(job_api, remote_id)
    time.sleep(1.2)  # six poll delays: a poll still going would have been sent by now
    assert job_api_gets(job_api, remote_id) == polls
    assert polls > count


def test_a_failed_run_shows_its_error_and_every_step_and_resume_runs_it_again(
    browser: webdriver.Chrome, tmp_path: Path, quick_job_api: dict[str, Any]
) -> None:
    proc, url = _serve(tmp_path, quick_job_api, failing=True)
    try:
        job = submit(url, {"datasetId": "ds-page-fails", "simulate": "failed"})
        browser.get(f"{url}/runs/{job}")
        until(browser, lambda d: "failed" in "".join(texts(d, "#run-status")), "the failure")
        until(browser, lambda d: texts(d, "#last-response"), "the last response")
        (box,) = texts(browser, "#run-error")
        assert "Error: PollingFailed" in box and "Last response (HTTP 200)" in box
        assert '"status": "failed"' in box
        shown = browser.find_element(By.ID, "main").text
        assert not re.search(r"\b(null|undefined)\b", shown), shown
        steps = "ol.steps > li"
        assert texts(browser, "ol.steps h3") == ["1. submit_job", "2. wait_for_job", "3. report"]
        statuses = browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.dataset.status);",
            steps,
        )
        assert statuses == ["completed", "failed", "not-started"]
        assert "not started" in texts(browser, 'li[data-step="step_3"] .status')[0]

        remote = page_json(url, f"/api/page/runs/{job}")["steps"][0]["result"]["response"]
        polls = job_api_gets(quick_job_api, remote["job_id"])
        click(browser, "resume-button")
        until(browser, lambda d: "once" in "".join(texts(d, "#run-resumed")), "resumed once")
        until(browser, lambda d: texts(d, "#resume-button"), "failed again, resumable")
        assert "failed" in "".join(texts(browser, "#run-status"))
        again = lambda _d: job_api_gets(quick_job_api, remote["job_id"]) > polls  # noqa: E731
        until(browser, again, "the job API polled again")
        assert page_json(url, f"/jobs/{job}")["status"] == "failed"
    finally:
        proc.stop()


def test_the_status_filter_is_in_the_address_and_lists_only_those(
    browser: webdriver.Chrome, server: str, first_job: str
) -> None:
    second = submit(server, {"datasetId": "ds-page-2"})
    browser.get(f"{server}/")
    until(browser, lambda d: attempts_shown(d, second) >= 1, "the second job")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("canceled")
    until(browser, lambda d: d.current_url.endswith("/?status=canceled"), "the filtered address")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-job-id]"), "rows")
    listed = [
        r.get_attribute("data-job-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-job-id]")
    ]
    assert listed == [first_job]
    browser.get(f"{server}/?status=processing")  # a link keeps the filter
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-job-id]"), "rows")
    listed = [
        r.get_attribute("data-job-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-job-id]")
    ]
    assert second in listed and first_job not in listed
    selected = Select(browser.find_element(By.ID, "filter-status")).first_selected_option
    assert selected.get_attribute("value") == "processing"


def test_when_the_key_stops_working_the_page_says_how_to_open_it(
    browser: webdriver.Chrome, tmp_path: Path, job_api: dict[str, Any]
) -> None:
    key = "k-1234567-page"
    proc, url = _serve(tmp_path, job_api, "--api-key-env", "PAGE_TEST_KEY", PAGE_TEST_KEY=key)
    try:
        job = submit(url, {"datasetId": "ds-page-3"}, **{"X-API-KEY": key})
        browser.get(f"{url}/?api_key={key}")  # the server keeps the key in a cookie
        until(browser, lambda d: attempts_shown(d, job) >= 1, "the job, listed live")
        assert "api_key" not in browser.current_url
        browser.delete_all_cookies()  # as when the server restarts with another key
        until(browser, lambda d: texts(d, ".notice.problem"), "a notice")
        (notice,) = texts(browser, ".notice.problem")
        assert "needs an API key" in notice and "/?api_key=" in notice
        assert key not in browser.page_source
    finally:
        proc.stop()
