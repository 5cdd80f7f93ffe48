"""The demo page (`mambaocr-demo`): started as a user starts it, driven in headless Chromium and through Gradio's own
client, plus its messages on their own (the drawing: `test_demo_render.py`).

The browser tests need the system's Chromium (Debian's `chromium`, which `.ci/run` installs) and the `playwright`
Python package; they are skipped where either is missing, except in CI (`CI` set), where that is a failure."""

import configparser
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import pipeline

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint

from .conftest import ROOT, load_script, tiny_config_kwargs

# slow as a whole: every test of the module shares a demo server process started at its first test (autouse)
pytestmark = pytest.mark.slow
gr = pytest.importorskip("gradio", reason="the demo page needs the `demo` extra (gradio)")
from mambaocr_hf.demo import app  # noqa: E402

shot = load_script("demo_page_screenshot")
SERVER_START_TIMEOUT = 120


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("demo_ckpt")
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), path)
    return path


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Two synthetic word crops and a text file that is not an image."""
    folder = tmp_path_factory.mktemp("crops")
    paths = [Path(path) for path in app.render_examples(2, folder, seed=3)]
    not_an_image = folder / "notes.txt"
    not_an_image.write_text("these are not pixels\n")
    return paths, not_an_image


@pytest.fixture(scope="module")
def reader(checkpoint):
    return pipeline("scene-text-recognition", model=str(checkpoint))


@pytest.fixture(scope="module", autouse=True)
def server_process(checkpoint):
    """`python -m mambaocr_hf.demo --model <checkpoint>` (what `mambaocr-demo` runs), started as a user starts it, at
    the module's first test so that it loads while the tests without a browser run."""
    port = shot.free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "mambaocr_hf.demo", "--model", str(checkpoint), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--examples", "2", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines: queue.Queue[str] = queue.Queue()  # drained all along, so a chatty server never blocks on a full pipe
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        yield process, port, lines
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(server_process):
    """The started page's URL, once it has printed it."""
    process, port, lines = server_process
    url, seen, deadline = f"http://127.0.0.1:{port}", [], time.monotonic() + SERVER_START_TIMEOUT
    while not any(url in line for line in seen):
        if process.poll() is not None or time.monotonic() > deadline:
            time.sleep(0.5)  # the last lines
            seen.extend(iter(lambda: lines.get_nowait() if not lines.empty() else None, None))
            pytest.fail(f"The demo did not print its URL within {SERVER_START_TIMEOUT} s:\n{''.join(seen)}")
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            pass
    return url + "/"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need the `playwright` package")
    executable = shot.find_chromium()
    if executable is None:
        message = "no Chromium to drive (apt-get install chromium, or set $CHROMIUM): the browser tests cannot run"
        if os.environ.get("CI"):
            pytest.fail(message + " - in CI they must (.ci/run installs it)")
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        browser = shot.open_browser(playwright, executable)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server)
    yield page
    page.close()


def test_missing_model_gives_a_page_message(tmp_path):
    demo = app.build_demo(str(tmp_path / "runs" / "demo_cpu"), num_examples=0)
    assert "does not exist" in app.describe_load_error(str(tmp_path / "runs" / "demo_cpu"))
    url = shot.start_page(demo)
    try:
        from gradio_client import Client

        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="does not exist. Train the demo checkpoint with `make demo`"):
            client.predict([], None, 1, "", "", "", False, 0.5, api_name="/read")
    finally:
        demo.close()
    # a folder that exists but holds no checkpoint, and a Hub id that is not in the offline cache
    assert app.load_reader(str(tmp_path))[1].startswith(f"Could not load the model `{tmp_path}`")
    assert app.load_reader("org/not-cached-model")[1].startswith("Could not load the model `org/not-cached-model`")


def test_examples_are_rewritten_in_one_folder_per_charset(reader, monkeypatch, tmp_path):
    """Starting the page again writes its examples to the same folder (none left behind per start); another seed or
    charset gets its own folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for _ in range(2):
        app.build_demo(reader=reader, num_examples=2)
    (folder,) = tmp_path.glob("mambaocr_demo_examples_*")
    assert sorted(path.name for path in folder.iterdir()) == ["example_0.png", "example_1.png"]
    tokenizer = reader.processor.tokenizer
    assert app.examples_folder(tokenizer) == folder
    assert app.examples_folder(tokenizer, seed=1) != folder
    assert app.examples_folder(None) != folder
    # an app killed while writing an example leaves its partial file: the next start removes it, not a live app's
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = folder / f".example_0.{int(finished.stdout)}.png"
    live = folder / f".example_1.{os.getppid()}.png"
    orphan.write_bytes(b"half")
    live.write_bytes(b"half")
    app.build_demo(reader=reader, num_examples=2)
    assert not orphan.exists() and live.exists()


def test_console_script_extra_and_space_files():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "mambaocr-demo = mambaocr_hf.demo.app:main" in config["options.entry_points"]["console_scripts"]
    extras = config["options.extras_require"]
    assert "gradio" in extras["demo"] and "gradio" in extras["dev"] and "playwright" in extras["dev"]
    space = ROOT / "spaces" / "mambaocr"
    readme = (space / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    # the Space has no setup.cfg: its requirements are the package's plus the demo's
    requirements = {line.strip() for line in (space / "requirements.txt").read_text().splitlines()}
    missing = set(config["options"]["install_requires"].split()) - requirements
    assert not missing, f"spaces/mambaocr/requirements.txt lacks {sorted(missing)}"
    assert set(extras["demo"].split()) <= requirements


def test_space_app_follows_the_model_variable(checkpoint, monkeypatch):
    """The Space's app.py builds the page for the model `MAMBAOCR_MODEL` names (the one line that points a Space at a
    Hub model), and without it says that its `model/` folder is missing."""
    import importlib.util

    def space_demo():
        spec = importlib.util.spec_from_file_location("space_app", ROOT / "spaces" / "mambaocr" / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    monkeypatch.setenv("MAMBAOCR_MODEL", str(checkpoint))

    def banner(demo):
        return next(block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "model_info")

    module = space_demo()
    assert isinstance(module.demo, gr.Blocks) and banner(module.demo).startswith(f"Model `{checkpoint}`")
    monkeypatch.delenv("MAMBAOCR_MODEL")
    if (ROOT / "spaces" / "mambaocr" / "model").exists():  # a Space being assembled here (git-ignored)
        return
    module = space_demo()
    assert module.MODEL == str(ROOT / "spaces" / "mambaocr" / "model")
    assert "No model loaded" in banner(module.demo) and "does not exist" in banner(module.demo)


def test_page_loads_an_adapter_folder(checkpoint, crops, tmp_path):
    peft = pytest.importorskip("peft")
    from mambaocr_hf.peft_utils import get_peft_model, save_adapter

    peft_model = get_peft_model(MambaOCRForCTC.from_pretrained(checkpoint).eval())
    with torch.no_grad():  # stand-in for training
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.add_(torch.randn(param.shape) * 0.5)
    adapter = tmp_path / "adapter"
    save_adapter(
        peft_model, adapter, processor=MambaOCRProcessor.from_pretrained(checkpoint), base_model=str(checkpoint)
    )
    reader, error = app.load_reader(str(adapter))
    assert error is None and (isinstance(reader.model, peft.PeftModel) or hasattr(reader.model, "peft_config"))
    (crop, _), _ = crops
    text, score, picture, *_ = app.DemoReader(reader)([str(crop)], None)
    assert text == reader([Image.open(crop)])[0]["generated_text"] and picture.height > 96


def expected_read(reader, path):
    result = reader([Image.open(path)], output_char_details=True)[0]
    return result["generated_text"], f"{result['score']:.3f}", len(result["chars"])


def test_page_reads_an_uploaded_crop(page, crops, reader, tmp_path):
    (crop, _), _ = crops
    shot.upload_and_wait(page, [crop])
    text, score, num_chars = expected_read(reader, crop)
    assert page.locator("#text textarea").input_value() == text
    assert page.locator("#score textarea").input_value() == score
    # the confidence picture: a real PNG as wide as the crop enlarged to 96 px high
    width = page.evaluate("document.querySelector('#picture img').naturalWidth")
    assert width == round(Image.open(crop).width * 96 / Image.open(crop).height)
    assert page.locator("#chars tbody tr").count() == num_chars
    assert not page.locator("#gallery").is_visible()  # one image: no gallery
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert Image.open(tmp_path / "page.png").width == 1280


def test_page_reads_a_batch_and_an_example(page, crops, reader):
    paths, _ = crops
    shot.upload_and_wait(page, paths)
    assert page.locator("#text textarea").input_value() == "\n".join(expected_read(reader, p)[0] for p in paths)
    assert page.locator("#gallery").is_visible()
    assert page.locator("#gallery img").count() >= len(paths)
    assert "Read 2 images in" in page.locator("#status").inner_text()
    # a synthetic example, rendered by the app, is read alone when picked
    page.locator("#examples .gallery-item").first.click()
    page.locator("#status").get_by_text("Read 1 image in").wait_for(timeout=shot.RESULT_TIMEOUT_MS)
    assert "\n" not in page.locator("#text textarea").input_value()


def test_page_says_when_an_upload_is_not_an_image(page, crops):
    _, not_an_image = crops
    page.locator("#upload input[type=file]").set_input_files(str(not_an_image))
    page.get_by_text(re.compile(r"notes\.txt`? is not an image")).first.wait_for(timeout=shot.RESULT_TIMEOUT_MS)
    assert "Traceback" not in page.content()
    assert page.locator("#text textarea").input_value() == ""


def test_api_endpoint_with_gradio_client(server, crops, reader):
    from gradio_client import Client, handle_file

    (crop, _), not_an_image = crops
    client = Client(server, verbose=False)
    assert "/read" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    text, score, picture, gallery, table, status = client.predict(
        [handle_file(str(crop))], None, 1, "", "", "", False, 0.5, api_name="/read"
    )
    expected_text, expected_score, num_chars = expected_read(reader, crop)
    assert (text, score) == (expected_text, expected_score)
    assert Image.open(picture).height > 96 and len(table["data"]) == num_chars
    assert status.startswith("Read 1 image in")
    # options reach the pipeline: a lexicon restricts the read to its words; beam search runs
    text, *_ = client.predict([handle_file(str(crop))], None, 4, "hello\nworld", "", "", False, 0.5, api_name="/read")
    assert text in ("hello", "world")
    # a file that is not an image among images is reported and skipped; alone it is an error with a message
    text, *_, status = client.predict(
        [handle_file(str(crop)), handle_file(str(not_an_image))], None, 1, "", "", "", False, 0.5, api_name="/read"
    )
    assert text == expected_text and "Skipped: `notes.txt` is not an image" in status
    with pytest.raises(Exception, match="notes.txt` is not an image"):
        client.predict([handle_file(str(not_an_image))], None, 1, "", "", "", False, 0.5, api_name="/read")
    # bf16 (where it is not native, the pipeline emulates it: the same text, slower)
    text, *_, status = client.predict([handle_file(str(crop))], None, 1, "", "", "", True, 0.5, api_name="/read")
    assert text == reader([Image.open(crop)], bf16=True)[0]["generated_text"] and "bf16)" in status
    with pytest.raises(Exception, match="charset lacks"):
        client.predict([handle_file(str(crop))], None, 1, "", "", "@", False, 0.5, api_name="/read")
