"""The UI in a real headless browser (Debian's chromium, driven by Playwright),
against ``cloudmover up`` over HTTPS with local workers and a real S3 server.
Screenshots of every step land in test-artifacts/browser/."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from localservers import free_ports
from support.frames import dpx_frame
from support.liveserver import LiveServer
from support.objects import assert_same_objects, put_objects
from support.waiting import wait_for

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_PASSWORD = "orange-tractor-meadow-61"
WRANGLER_PASSWORD = "violet-canyon-river-88"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("Debian's chromium package is needed for the browser tests (scripts/test.sh installs it)")
    return found


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        page = context.new_page()
        yield page
        context.close()
        browser.close()


@pytest.fixture
def live(tmp_path, s3_env):
    with LiveServer(tmp_path / "headnode", free_ports(1)[0]) as server:
        yield server


class Steps:
    def __init__(self, page, name: str):
        self.page, self.folder, self.count = page, ARTIFACTS / name, 0
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)

    def shot(self, what: str) -> None:
        self.count += 1
        self.page.screenshot(path=str(self.folder / f"{self.count:02d}-{what}.png"), full_page=True)


def sign_in(page, base, username, password):
    page.goto(base + "/signin")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#signin-button")


def forced_change(page, base, current, new, steps: Steps | None = None):
    page.wait_for_url(base + "/account/password")
    page.locator("#must-change").wait_for()
    if steps:
        steps.shot("forced-password-change")
    page.fill("#new-password", new)
    page.locator("#strength-label", has_text="Strength: strong").wait_for()
    if steps:
        steps.shot("password-strength-shown")
    page.fill("#current", current)
    page.fill("#repeat", new)
    page.click("#change-button")
    page.wait_for_url(base + "/")


def add_folder(page, name, bucket, s3):
    page.fill("#folder-name", name)
    page.fill("#folder-bucket", bucket)
    page.select_option("#folder-region", s3.region)
    page.fill("#folder-endpoint", s3.endpoint_url)
    page.check("#access-keys")
    page.fill("#folder-key-id", s3.access_key)
    page.fill("#folder-secret", s3.secret_key)
    page.click("#save-folder")
    page.locator(f'tr.folder[data-name="{name}"]').wait_for()


def grant(page, folder, username):
    row = page.locator(f'tr.folder[data-name="{folder}"]')
    row.locator(f'input.grant[data-username="{username}"]').check()
    row.locator("button.save-grants").click()
    page.locator("#notice", has_text=f"Access to {folder} saved.").wait_for()


def test_first_sign_in_to_a_finished_copy_by_drag_and_drop(browser_page, live, buckets, s3_env):
    page, base = browser_page, live.base
    steps = Steps(page, "copy-walk")
    source, destination = buckets
    objects = {f"shots/sh010/frame-{n:04d}.dpx": bytes([n % 251]) * (2000 + n) for n in range(40)}
    objects["shots/readme.txt"] = b"notes"
    put_objects(s3_env.client(), source, objects)

    # first sign-in with the initial password, then the forced change with strength shown
    page.goto(base + "/")
    page.wait_for_url(base + "/signin?next=/")
    steps.shot("sign-in")
    sign_in(page, base, "admin", live.initial_password)
    forced_change(page, base, live.initial_password, ADMIN_PASSWORD, steps)

    # add a Wrangler and a View Only user at once
    page.click("text=Users")
    page.wait_for_url(base + "/admin/users")
    first = page.locator("tr.new-user").nth(0)
    first.locator(".new-username").fill("wendy")
    first.locator(".new-password").fill("initial-wendy-pw")
    first.locator(".new-role").select_option("wrangler")
    first.locator(".new-email").fill("wendy@example.org")
    page.click("#add-row")
    second = page.locator("tr.new-user").nth(1)
    second.locator(".new-username").fill("vera")
    second.locator(".new-password").fill("initial-vera-pw")
    second.locator(".new-role").select_option("viewer")
    page.click("#add-users-button")
    page.locator('tr.user[data-username="wendy"]').wait_for()
    page.locator('tr.user[data-username="vera"]').wait_for()
    assert "admin assigned" in page.locator('tr.user[data-username="wendy"]').inner_text()
    steps.shot("users-added")

    # two folders on the local S3 server, both granted to the wrangler
    page.click("text=S3 folders")
    page.wait_for_url(base + "/admin/folders")
    add_folder(page, "Source", source, s3_env)
    add_folder(page, "Destination", destination, s3_env)
    grant(page, "Source", "wendy")
    grant(page, "Destination", "wendy")
    steps.shot("folders-added")

    # the wrangler signs in, drags a sub-folder onto the other folder, submits a copy
    page.click("text=Sign out")
    page.wait_for_url(base + "/signin")
    sign_in(page, base, "wendy", "initial-wendy-pw")
    forced_change(page, base, "initial-wendy-pw", WRANGLER_PASSWORD)
    assert page.locator("text=Users").count() == 0   # no admin menu for a wrangler
    page.click("#new-job-link")
    page.wait_for_url(base + "/jobs/new")
    page.locator('.node:has(> .label[data-folder="Source"][data-path=""]) > .toggle').click()
    dragged = page.locator('.label[data-folder="Source"][data-path="shots/"]')
    dragged.wait_for()
    steps.shot("folder-tree")
    dragged.drag_to(page.locator('.label[data-folder="Destination"][data-path=""]'))
    page.locator("#job-dialog[open]").wait_for()
    assert page.input_value("#job-source") == "folder:Source/shots/"
    assert page.input_value("#job-destination") == "folder:Destination/shots/"
    page.locator("#estimate", has_text="41 object(s)").wait_for()
    steps.shot("job-dialog-with-estimate")
    page.click("#submit-job")
    page.wait_for_url(base + "/")

    # the progress bar reaches 100 %, and the job's detail shows the objects copied
    box = page.locator("article.job").first
    box.locator(".state", has_text="Complete").wait_for(timeout=120_000)
    assert box.get_attribute("class") == "job complete"
    assert box.locator(".bar").get_attribute("aria-valuenow") == "100"
    assert "41 / 41 objects" in box.inner_text()
    steps.shot("progress-complete")
    box.click()
    page.wait_for_url(f"{base}/jobs/*")
    timings = page.locator("#job-timings")
    timings.locator("tr", has_text="Objects copied").locator("td", has_text="41").wait_for()
    assert page.locator("#job-options").inner_text().count("folder:") == 2
    steps.shot("job-detail")
    assert_same_objects(s3_env.client(), destination,
                        {key: body for key, body in objects.items()}, prefix="")

    # the same copy again, only what is missing or changed: every object is already there
    page.goto(base + "/jobs/new")
    page.locator('.node:has(> .label[data-folder="Source"][data-path=""]) > .toggle').click()
    dragged = page.locator('.label[data-folder="Source"][data-path="shots/"]')
    dragged.wait_for()
    dragged.drag_to(page.locator('.label[data-folder="Destination"][data-path=""]'))
    page.locator("#job-dialog[open]").wait_for()
    page.check("#job-sync")
    page.click("#submit-job")
    page.wait_for_url(base + "/")
    again = page.locator("article.job").first
    again.locator(".state", has_text="Complete").wait_for(timeout=120_000)
    again.click()
    page.wait_for_url(f"{base}/jobs/*")
    page.locator("#job-timings tr", has_text="Already present (skipped)").locator("td", has_text="41").wait_for()
    assert "Only missing or changed (sync)\tyes" in page.locator("#job-options").inner_text()
    assert timings.locator("tr", has_text="Objects copied").locator("td").inner_text() == "0"


def test_failed_jobs_show_red_and_warnings_yellow_with_reasons(browser_page, live, buckets, s3_env, tmp_path):
    page, base = browser_page, live.base
    steps = Steps(page, "red-and-yellow")
    source, destination = buckets
    client = s3_env.client()
    for n in range(2):
        client.put_object(Bucket=source, Key=f"frames/f{n}.dpx", Body=dpx_frame(30 + n), ContentType="image/x-dpx")
    rest = requests.Session()
    rest.headers["Authorization"] = f"Bearer {live.api_token}"   # the node's operator token
    certificate = str(live.data_dir / "tls" / "cert.pem")         # self-signed, for 127.0.0.1

    def run(body):
        job = rest.post(base + "/api/v1/jobs", json={"endpoint_url": s3_env.endpoint_url, **body}, timeout=60,
                        verify=certificate)
        assert job.status_code == 201, job.text
        url = f"{base}/api/v1/jobs/{job.json()['id']}"
        return wait_for(lambda: (found := rest.get(url, timeout=30, verify=certificate).json())
                        ["state"] in ("complete", "complete_with_warnings", "failed") and found,
                        timeout=180, what="job to finish")

    packed = run({"source": f"s3://{source}/frames/", "destination": f"s3://{destination}/packed/",
                  "codec": "compress", "name": "pack"})
    assert packed["state"] == "complete"
    got = client.get_object(Bucket=destination, Key="packed/f1.dpx")
    damaged = bytearray(got["Body"].read())
    damaged[len(damaged) // 2:len(damaged) // 2 + 64] = bytes(64)
    client.put_object(Bucket=destination, Key="packed/f1.dpx", Body=bytes(damaged), ContentType=got["ContentType"],
                      Metadata=got["Metadata"])
    client.copy_object(Bucket=destination, Key="broken/f1.dpx", CopySource={"Bucket": destination, "Key": "packed/f1.dpx"})
    warned = run({"source": f"s3://{destination}/packed/", "destination": f"s3://{destination}/restored/",
                  "codec": "decompress", "name": "restore with one bad frame"})
    failed = run({"source": f"s3://{destination}/broken/", "destination": f"s3://{destination}/restored-2/",
                  "codec": "decompress", "name": "restore a bad frame"})
    assert (warned["state"], failed["state"]) == ("complete_with_warnings", "failed")

    sign_in(page, base, "admin", live.initial_password)
    forced_change(page, base, live.initial_password, ADMIN_PASSWORD)
    page.check("#show-all")
    yellow = page.locator(f'article.job[data-job-id="{warned["id"]}"]')
    red = page.locator(f'article.job[data-job-id="{failed["id"]}"]')
    yellow.wait_for()
    red.wait_for()
    assert yellow.get_attribute("class") == "job complete_with_warnings"
    assert red.get_attribute("class") == "job failed"
    colour = lambda box: box.evaluate("node => getComputedStyle(node).backgroundColor")  # noqa: E731
    assert colour(yellow) == "rgb(255, 248, 197)" and colour(red) == "rgb(255, 235, 233)"
    steps.shot("dashboard-red-and-yellow")
    red.click()
    page.wait_for_url(f"{base}/jobs/{failed['id']}")
    reason = page.locator("tr.failure", has_text="broken/f1.dpx")
    reason.wait_for()
    assert "corrupt codec container" in reason.inner_text()
    steps.shot("failed-job-reasons")
    page.goto(f"{base}/jobs/{warned['id']}")
    page.locator("tr.failure", has_text="packed/f1.dpx").wait_for()
    assert page.locator("#job-state").inner_text() == "Complete with warnings"
    steps.shot("warning-job-reasons")
