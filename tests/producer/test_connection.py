"""``masked``, the one helper that hides a URL's password wherever rewardq prints a URL."""

from __future__ import annotations

import pytest

from rewardq.connection import masked


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:**@127.0.0.1:6379/0"),
        (
            "rediss://trainer:p%40ss@h:6380/1?ssl_cert_reqs=required",
            "rediss://trainer:**@h:6380/1?ssl_cert_reqs=required",
        ),
        ("postgresql+psycopg://u:dbpw@db/audit", "postgresql+psycopg://u:**@db/audit"),
        ("redis://h:6379", "redis://h:6379"),
        (
            "sentinel://:pw@s1:26379/0;sentinel://:pw@s2:26379/0;sentinel://s3:26379",
            "sentinel://:**@s1:26379/0;sentinel://:**@s2:26379/0;sentinel://s3:26379",
        ),
        ("sqlite:////tmp/audit.db", "sqlite:////tmp/audit.db"),
        ("not a url", "not a url"),
        ("", ""),
        (None, ""),
    ],
)
def test_only_the_password_is_masked(url: str | None, shown: str) -> None:
    assert masked(url) == shown


def test_an_unparsable_url_keeps_its_scheme_only() -> None:
    assert masked("redis://u:secret@[::1:6379/0") == "redis://**"
    assert masked("//u:secret@[::1") == "**"
