"""downpour report: one self-contained HTML file whose figures all display in a browser."""

import base64
import json
import re
import shutil
import subprocess

import pytest

from downpour.downscaling.verify import verify_run
from downpour.report.html import read_training_log, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report_run(sampled_run, tmp_path_factory):
    from downpour.downscaling.quality import evaluate

    run = tmp_path_factory.mktemp("report_run")
    for sub in ("data", "logs", "checkpoints"):
        (run / sub).symlink_to(sampled_run / sub)
    evaluate(sampled_run / "samples" / "posterior_train.zarr", run)
    verify_run(run, checkpoints={}, n_boot=50, echo=lambda m: None)
    return run


def test_training_log_is_read_per_epoch(sampled_run):
    log = read_training_log(sampled_run, "cvae")
    assert [e for e, _ in log["val/MAE"]] == [0.0]
    assert log["val/MAE"][0][1] > 0
    assert "train/loss" in log


def test_report_embeds_every_figure(report_run):
    path = write_report(report_run, summary="verdict: nothing to see")
    text = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    # cVAE training curves, 6 sample-quality figures (members, intensity, RAPSD, RAPSD
    # ratio, rank histogram, distributions), verification scores and maps, and the 5
    # figures of the generator scored as a probabilistic downscaler
    assert len(images) == 14
    assert "spread–skill ratio (1 = calibrated)" in text and "share of wavelengths" in text
    assert all(base64.b64decode(i)[:8] == PNG for i in images)
    assert 'src="http' not in text and "file:" not in text  # nothing outside the file
    for heading in ("Data card", "Training curves", "Sample quality", "Downscaling verification",
                    "Which differences are significant",
                    "Generator as a probabilistic downscaler"):  # fmt: skip
        assert heading in text
    assert "verdict: nothing to see" in text
    card = json.loads((report_run / "data" / "card.json").read_text())
    assert f"<td>{card['splits']['train']['days']}</td>" in text


def test_report_opens_in_headless_chromium(report_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (make test installs it where apt is available)")
    html = write_report(report_run, tmp_path / "r.html").read_text()
    probe = (
        "<script>window.addEventListener('load',()=>{const im=[...document.images];"
        "const ok=im.filter(i=>i.complete&&i.naturalWidth>0).length;"
        "document.body.setAttribute('data-images',ok+'/'+im.length);});</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"))
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'data-images="(\d+)/(\d+)"', out.stdout)
    assert found is not None, out.stderr[-2000:]
    assert found.group(1) == found.group(2) == "14"
