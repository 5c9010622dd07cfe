"""The PostgreSQL URL as the README writes it (`postgresql://...`, no driver named) works: SQLAlchemy 2.1 reads it
as psycopg 3, which the `postgres` extra installs."""

import re
from pathlib import Path

import pytest

from resnas.cli import main
from resnas.storage import open_study

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def readme_urls() -> list[str]:
    return re.findall(r"postgresql[\w+]*://[\w:@.]+/\w+", README)


def test_the_readme_names_no_driver():
    urls = readme_urls()
    assert "postgresql://user:pass@host/db" in urls and "postgresql://user:password@dbhost:5432/resnas" in urls
    assert all(u.startswith("postgresql://") for u in urls), urls


def test_a_plain_url_reaches_the_server(capsys):
    """The issue's command: with the driver installed it gets as far as the (absent) server."""
    assert main(["search", "--space", "wrn", "--storage", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open storage 'postgresql://nobody@127.0.0.1:1/none'" in err
    assert "No module named" not in err and "127.0.0.1" in err.split("none':", 1)[1]


@pytest.mark.slow
def test_the_readmes_url_runs_a_search(postgres, tmp_path, tiny_space_text, capsys):
    """The README's URL with this test server's user, host, port and database in its places."""
    shown = next(u for u in readme_urls() if "@dbhost" in u)
    url = shown.replace("user:password@dbhost:5432/resnas", f"postgres@127.0.0.1:{postgres.port}/postgres")
    assert url == postgres.url
    (tmp_path / "space.toml").write_text(tiny_space_text)
    assert main(["search", "--space", str(tmp_path / "space.toml"), "--study", "readme-url", "--budget", "1",
                 "--epochs", "1", "--workers", "1", "--storage", url, "--out-dir", str(tmp_path / "studies"),
                 "--quiet"]) == 0
    assert f"storage {url}" in capsys.readouterr().out
    assert len(open_study("readme-url", storage=url).get_trials()) >= 1
