"""A user's browser for the dashboard tests: Debian's headless Chromium driven by Selenium
through Debian's chromedriver (nothing downloads a browser or a driver), and the few steps a
person takes on Ray's dashboard and on optuna-dashboard."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 60  # a page's first render on a busy two-core machine


@contextmanager
def chromium(profile: Path) -> Iterator:
    """Headless Chromium with a fresh profile (no token remembered from an earlier run)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,2400", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _page_text(driver) -> str:
    # read in the page in one step: a body element found first and read after can be
    # replaced in between by the dashboard's re-render (StaleElementReferenceException)
    return driver.execute_script("return document.body ? document.body.innerText : ''") or ""


def _wait_for_text(driver, words: Iterable[str], what: str) -> str:
    """The page's text once it shows every word; on a timeout, the words missing and the text."""
    words = list(words)
    try:
        WebDriverWait(driver, WAIT_S).until(
            lambda d: all(word in _page_text(d) for word in words))
    except TimeoutException:
        text = _page_text(driver)
        missing = [word for word in words if word not in text]
        raise AssertionError(f"{what}: {missing} not shown after {WAIT_S} s; the page "
                             f"reads:\n{text[:3000]}") from None
    return _page_text(driver)


def ray_job_page(driver, dashboard: str, submission_id: str, token: str,
                 log_keyword: str, names: list[str], screenshot: Path) -> str:
    """Open the job's page as a user does: the dashboard asks for the cluster's token first
    (Ray 2.60 shows an "Authentication Token Required" dialog over an empty page), then the
    page shows the job; the driver log, filtered by `log_keyword` in its Keyword box, must name
    every one of `names`. Returns the page's text."""
    driver.get(f"{dashboard}/#/jobs/{submission_id}")
    wait = WebDriverWait(driver, WAIT_S)
    _wait_for_text(driver, ["Authentication Token Required"], "Ray's token dialog")
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[type=password]"))
               ).send_keys(token)
    driver.find_element(By.XPATH, "//button[normalize-space()='Submit' or "
                                  "normalize-space()='SUBMIT']").click()
    _wait_for_text(driver, [submission_id, "SUCCEEDED", "Logs"], "the job's page")
    keyword = wait.until(ec.element_to_be_clickable((
        By.XPATH, "//div[contains(@class, 'MuiFormControl-root')]"
                  "[.//label[normalize-space()='Keyword']]//input")))
    keyword.send_keys(log_keyword, Keys.ENTER)
    text = _wait_for_text(driver, names, "the job's driver log")
    driver.save_screenshot(str(screenshot))
    return text


def optuna_study_trials(driver, dashboard: str, study: str, trials: dict[int, str],
                        screenshots: Path) -> str:
    """optuna-dashboard as a user reads it: the study list names the study; its link opens the
    study's page; its Trials page lists every trial ("Trial N" and its state, e.g. {0:
    "Complete"}). Screenshots STUDY-study.png and STUDY-trials.png under `screenshots`.
    Returns the Trials page's text."""
    driver.get(f"{dashboard}/dashboard")
    link = WebDriverWait(driver, WAIT_S).until(
        ec.element_to_be_clickable((By.PARTIAL_LINK_TEXT, study)))
    link.click()
    _wait_for_text(driver, [f"{study} (id=", "Hyperparameter Importance"], "the study's page")
    driver.save_screenshot(str(screenshots / f"{study}-study.png"))
    driver.get(f"{driver.current_url.rstrip('/')}/trials")
    words = [f"{len(trials)} Trials"] + [f"Trial {n}\n{state}" for n, state in trials.items()]
    text = _wait_for_text(driver, words, "the study's trials")
    driver.save_screenshot(str(screenshots / f"{study}-trials.png"))
    return text
