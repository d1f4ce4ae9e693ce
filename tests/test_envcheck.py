"""The welcome notebook's environment check."""

from diffusion_edu.envcheck import environment_report, required_pins


def test_required_pins_come_from_the_installed_metadata():
    pins = required_pins()
    assert pins.get("torch") == "2.13.0"
    assert set(pins) == {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm"}


def test_report_names_python_packages_device_and_data():
    items = {item.name: item for item in environment_report()}
    assert {"python", "torch", "numpy", "device", "data"} <= set(items)
    assert items["python"].ok and items["torch"].ok
    assert items["data"].ok and "4,500" in items["data"].detail
    assert items["device"].detail.startswith("Using ")


def test_a_missing_package_is_reported_not_raised(monkeypatch):
    import diffusion_edu.envcheck as envcheck

    monkeypatch.setattr(envcheck, "required_pins", lambda: {"torch": "2.13.0", "nosuchpkg": "1.0"})
    items = {item.name: item for item in envcheck.environment_report()}
    assert not items["nosuchpkg"].ok and "make lab" in items["nosuchpkg"].detail
