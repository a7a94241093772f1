"""Labels and lineage names have one definition (``shared.labels``), used by every reader."""

from __future__ import annotations

import pytest

from shared import labels
from shared.errors import InvalidParameterError, SettingsError
from shared.jobs_service import parse_list_filters
from shared.settings import Settings
from shared.tuning_config import LINEAGE_RE


@pytest.mark.parametrize("lineage", ["faq", "support-bot", "a", "x" * 63, "v2_eu"])
def test_valid_lineages_are_accepted_by_the_api_filter(lineage: str) -> None:
    assert labels.LINEAGE_RE.match(lineage)
    assert parse_list_filters({"lineage": lineage}).lineage == lineage


@pytest.mark.parametrize("lineage", ["FAQ", "faq.v1", "x" * 64, "-faq", "", "f q"])
def test_a_lineage_no_upload_can_have_is_refused_by_the_api_filter(lineage: str) -> None:
    # Before, the API accepted up to 100 chars with capitals and dots: filters that never match.
    assert not labels.LINEAGE_RE.match(lineage)
    with pytest.raises(InvalidParameterError, match="lineage"):
        parse_list_filters({"lineage": lineage})


def test_the_tuning_config_uses_the_same_definition() -> None:
    assert LINEAGE_RE is labels.LINEAGE_RE


@pytest.mark.parametrize(("value", "allow_empty", "ok"), [("", True, True), ("", False, False), ("A", True, False)])
def test_label_values(value: str, allow_empty: bool, ok: bool) -> None:
    assert labels.is_label_value(value, allow_empty=allow_empty) is ok


def test_the_deployment_label_must_be_a_non_empty_label_value() -> None:
    with pytest.raises(SettingsError, match="SFTPILOT_DEPLOYMENT"):
        Settings(project="p", bucket="datasets-bkt", deployment="")
    with pytest.raises(SettingsError, match="SFTPILOT_DEPLOYMENT"):
        Settings(project="p", bucket="datasets-bkt", deployment="x" * 64)
