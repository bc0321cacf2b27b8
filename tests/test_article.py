"""The reference article's table: aHash and pHash must match all 80 published cells.

Needs the article's image (not distributed): put lena_std.tif in resources/.
CI copies it there; elsewhere this test skips.
"""

import os

import pandas as pd
import pytest

from harness.__main__ import main
from tests.conftest import LENA, ROOT

PUBLISHED = os.path.join(ROOT, "tests", "data", "article_table.csv")


@pytest.mark.skipif(not os.path.isfile(LENA), reason="resources/lena_std.tif is absent (not distributed)")
def test_article_table_reproduced(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's paths are relative to the project root
    out = tmp_path / "lena"
    assert main(["run", "configs/lena.yaml", "--hashers", "aHash,pHash", "--out", str(out), "--quiet"]) == 0
    ours = pd.read_csv(out / "table.csv")
    published = pd.read_csv(PUBLISHED)
    assert ours["label"].tolist() == published["label"].tolist()
    assert ours["family"].tolist() == published["family"].tolist()
    pd.testing.assert_series_equal(ours["value"], published["value"])
    mismatches = [(row.label, hasher, getattr(row, hasher), published.at[i, hasher])
                  for i, row in enumerate(ours.itertuples()) for hasher in ("aHash", "pHash")
                  if getattr(row, hasher) != published.at[i, hasher]]
    assert mismatches == [], f"{len(mismatches)} of 80 cells differ from the article"
