"""twostage report, twostage explore and the browse page, on the small generated dataset."""

import json
import os
import shutil
import time

import numpy as np
import pytest

from twostage.cli import main
from twostage.serving.clients.recommender import Recommender

ARTIFACTS = os.environ.get("TWOSTAGE_TEST_ARTIFACTS", os.path.join(os.path.dirname(__file__), "..", "..", "test-artifacts"))


@pytest.fixture(scope="module")
def model(exported_model):
    return exported_model.export_path


@pytest.mark.slow
def test_report_has_every_section_and_figure(model, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["-q", "report", "--model", model, "--out", str(out), "--architectures", "svd,default"]) == 0
    page = (out / "report.html").read_text()
    for section in ("id='headline'", "id='curves'", "id='lists'", "id='rmse'", "id='ratings'", "id='examples'"):
        assert section in page
    report = json.loads((out / "report.json").read_text())
    for name in report["figures"].values():
        assert (out / name).stat().st_size > 10_000  # a real PNG, not an empty canvas
        assert page.count("data:image/png;base64,") == 3
    lists = report["lists"]
    assert set(lists) == {"two-stage", "retrieval", "popularity", "EASE", "ALS (implicit)", "item-based CF (Pearson)",
                          "rating model: svd", "rating model: default"}
    assert all(len(f["recall"]) == 20 and len(f["ndcg"]) == 20 for f in lists.values())  # K = 1..max_k
    assert all(0 <= v <= 1 for f in lists.values() for v in f["recall"] + f["ndcg"])
    assert lists["two-stage"]["recall"][9] > lists["popularity"]["recall"][9]
    assert lists["item-based CF (Pearson)"]["recall"][9] > 0.05
    assert [r["architecture"] for r in report["rmse"]] == ["exported model", "svd", "default"]
    assert 0 < lists["two-stage"]["coverage@10"] <= 1
    example = report["examples"][0]
    assert example["rated_highly"] and len(example["recommended"]) == 10
    assert "two-stage" in capsys.readouterr().out


def test_item_based_cf_finds_the_planted_tastes(small_synthetic):
    from twostage.data import SplitConfig, split
    from twostage.data.baselines import item_pearson_scorer

    data = small_synthetic.data
    train, _ = split(data.ratings, SplitConfig())
    scores = item_pearson_scorer(data.movies.movie_id, train)(np.asarray(["1", "2", "3"]))
    assert scores.shape == (3, len(data.movies))
    taste = small_synthetic.movie_taste
    for row, user in enumerate(["1", "2", "3"]):
        liked = train.movie_id[(train.user_id == user) & (train.rating >= 4)]
        if len(liked) == 0:
            continue
        favourite = max({taste[m] for m in liked}, key=lambda t: sum(taste[m] == t for m in liked))
        top = data.movies.movie_id[np.argsort(-scores[row])[:10]]
        assert np.mean([taste[m] == favourite for m in top]) > 0.3  # eight tastes: 0.125 by chance


@pytest.mark.slow
def test_explore_clusters_group_the_planted_tastes(model, small_synthetic, tmp_path, capsys):
    out = tmp_path / "explore"
    assert main(["-q", "explore", "--model", model, "--out", str(out), "--clusters", "8"]) == 0
    assert (out / "movie_map.png").stat().st_size > 10_000
    result = json.loads((out / "explore.json").read_text())
    assert result["coloured_by"] == "genre"
    taste = small_synthetic.movie_taste
    purity = [max(np.unique([taste[m] for m in c["movie_ids"]], return_counts=True)[1]) / c["size"]
              for c in result["clusters"] if c["size"]]
    assert np.mean(purity) > 0.5  # eight tastes: about 0.2 for clusters drawn at random
    assert result["biases"]["largest"][0]["bias"] >= result["biases"]["smallest"][0]["bias"]
    text = capsys.readouterr().out
    assert "Clusters" in text and "Nearest neighbours" in text


@pytest.mark.slow
def test_browse_api_answers_from_the_export(model):
    from twostage.data.errors import TwostageError
    from twostage.ui import BrowseApi

    recommender = Recommender.load(model)
    api = BrowseApi(recommender)
    users = api.answer("/api/users", {})
    assert users["count"] == len(recommender.known_users()) and "1" in users["users"]
    page = api.answer("/api/recommend", {"user": ["3"], "k": ["5"]})
    assert [r["movie_id"] for r in page["recommendations"]] == [r.movie_id for r in recommender.recommend("3", k=5)]
    assert sorted(m["movie_id"] for m in page["history"]) == sorted(recommender.training_history(["3"])[0])
    title = recommender.catalog()[1][0]
    assert title in [m["title"] for m in api.answer("/api/search", {"q": [title.split()[0].lower()]})["movies"]]
    with pytest.raises(TwostageError, match="not in this model's catalog"):
        api.answer("/api/movie", {"id": ["no-such-movie"]})
    with pytest.raises(TwostageError, match="k must be"):
        api.answer("/api/recommend", {"user": ["3"], "k": ["many"]})


@pytest.mark.slow
def test_browse_server_answers_every_bad_request_and_a_burst_of_clients(model):
    import json
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from twostage.ui import serve_in_background

    server, url = serve_in_background(model)
    try:
        def get(path):
            try:
                with urllib.request.urlopen(url + path, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        for path, message in (("/api/recommend?user=3&k=%C2%B2", "k must be a whole number"),
                              ("/api/recommend?user=3&k=0", "k must be a whole number"),
                              ("/api/recommend?k=5", "user parameter is missing"),
                              ("/api/movie?id=", "id parameter is missing"),
                              ("/api/movie?id=nope", "not in this model's catalog")):
            code, body = get(path)
            assert code == 400 and message in body["error"], (path, code, body)
        assert get("/api/nothing")[0] == 404
        users = get("/api/users")[1]["users"]
        numeric = [u for u in users if u.isdecimal()]
        assert numeric == sorted(numeric, key=int) and numeric[:3] == ["1", "2", "3"]
        # 64 clients at once: every one is answered (the listen backlog once held 5).
        with ThreadPoolExecutor(64) as pool:
            codes = list(pool.map(lambda i: get(f"/api/recommend?user={i % 50 + 1}&k=5")[0], range(64)))
        assert codes == [200] * 64
    finally:
        server.shutdown()


def _browser():
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("TWOSTAGE_REQUIRE_BROWSER"):
            pytest.fail("TWOSTAGE_REQUIRE_BROWSER is set but Chromium/chromedriver are not installed")
        pytest.skip("no headless browser here: install Chromium and its driver "
                    "(apt-get install chromium chromium-driver) to run the browse-page test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1300,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _wait(condition, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("the page did not show it in time")


@pytest.mark.slow
def test_browse_page_in_a_real_browser(model):
    from selenium.webdriver.common.by import By

    from twostage.ui import serve_in_background

    browser = _browser()
    server, url = serve_in_background(model)
    recommender = Recommender.load(model)
    try:
        browser.get(url)
        _wait(lambda: "known users" in browser.find_element(By.ID, "user-count").text)
        browser.find_element(By.ID, "user-input").send_keys("3")
        browser.find_element(By.ID, "user-go").click()
        rows = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#recommendations tbody tr"))
        shown = [row.find_elements(By.TAG_NAME, "td")[1].text for row in rows]
        assert shown == [r.title for r in recommender.recommend("3", k=10)]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#history li")) == len(recommender.training_history(["3"])[0])
        # A failed query must not leave the previous user's results on screen.
        browser.find_element(By.ID, "user-input").clear()
        browser.find_element(By.ID, "user-go").click()
        _wait(lambda: "missing or empty" in browser.find_element(By.ID, "user-error").text)
        assert not browser.find_element(By.ID, "recommendations").is_displayed()
        assert not browser.find_elements(By.CSS_SELECTOR, "#history li")
        browser.find_element(By.ID, "user-input").send_keys("3")
        browser.find_element(By.ID, "user-go").click()
        _wait(lambda: browser.find_element(By.ID, "recommendations").is_displayed())

        ids, titles = recommender.catalog()
        word = titles[0].split()[0]
        browser.find_element(By.ID, "movie-query").send_keys(word)
        browser.find_element(By.ID, "movie-go").click()
        results = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#search-results li a"))
        assert all(word.lower() in r.text.lower() for r in results)
        chosen_title, chosen_id = results[0].text, results[0].get_attribute("data-movie-id")
        results[0].click()
        similar = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#similar li a"))
        assert browser.find_element(By.ID, "movie-title").text == chosen_title
        assert [a.get_attribute("data-movie-id") for a in similar] == \
            [m.movie_id for m in recommender.similar_movies(chosen_id, k=10)]
        also = browser.find_elements(By.CSS_SELECTOR, "#also-liked li a")
        assert [a.get_attribute("data-movie-id") for a in also] == \
            [m.movie_id for m in recommender.also_liked(chosen_id, k=10)]
        os.makedirs(ARTIFACTS, exist_ok=True)
        assert browser.save_screenshot(os.path.join(ARTIFACTS, "browse_page.png"))
    finally:
        browser.quit()
        server.shutdown()
