"""`dvc repro` runs the stages, and a second `dvc repro` is a no-op."""

import pytest

pytestmark = pytest.mark.slow


def test_repro_then_up_to_date(dvc_repo):
    first = dvc_repo.first_repro
    repo = dvc_repo.root
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo / "dvc.lock").is_file() and (repo / "reports/register.json").is_file()
    second = dvc_repo.dvc("repro")
    assert second.returncode == 0, second.stderr
    assert "Data and pipelines are up to date." in second.stdout
    status = dvc_repo.dvc("status")
    assert "up to date" in status.stdout, status.stdout
    changed = dvc_repo.dvc("repro", "--dry")  # still nothing to do
    assert "Running stage" not in changed.stdout
