"""Scenario schema: every preset validates; malformed configs fail at load naming the field."""

import pytest
import yaml

from flexenv.scenario import ScenarioError, list_presets, list_tariffs, load, load_tariff
from flexenv.scenario.schema import slot_covers


def test_presets_exist():
    presets = list_presets()
    assert {"teaching10", "rural40", "suburban100"} <= set(presets)
    assert {"flat", "two_slot_tou", "be_dual_exclusive_night", "it_f1_f2_f3", "fr_peak_offpeak"} <= set(list_tariffs())


@pytest.mark.parametrize("name", list_presets())
def test_every_scenario_preset_validates(name):
    scenario = load(name)
    assert scenario.name == name
    assert scenario.n_prosumers >= 1


def test_preset_sizes():
    assert load("teaching10").n_prosumers == 10
    assert 35 <= load("rural40").n_prosumers <= 45
    assert 90 <= load("suburban100").n_prosumers <= 110


@pytest.mark.parametrize("name", list_tariffs())
def test_every_tariff_preset_validates(name):
    tariff = load_tariff(name)
    assert tariff.name == name


def _price_at(tariff, hour, weekday):
    price = None
    for slot in tariff.slots:  # later slots override earlier ones
        if slot_covers(slot, hour, weekday):
            price = slot.price_eur_per_kwh
    return price


def test_tariff_schemes_follow_seed_table_13():
    tou = load_tariff("two_slot_tou")
    assert _price_at(tou, 8.0, 0) > _price_at(tou, 7.75, 0)  # day 08-23
    assert _price_at(tou, 23.0, 0) == _price_at(tou, 3.0, 0)  # night 23-08
    italy = load_tariff("it_f1_f2_f3")
    f1, f2, f3 = _price_at(italy, 10, 2), _price_at(italy, 20, 2), _price_at(italy, 2, 2)
    assert f1 > f2 > f3
    assert _price_at(italy, 7.5, 2) == f2 and _price_at(italy, 10, 5) == f2 and _price_at(italy, 10, 6) == f3
    france = load_tariff("fr_peak_offpeak")
    assert _price_at(france, 8, 0) > _price_at(france, 19, 0)
    belgium = load_tariff("be_dual_exclusive_night")
    assert set(belgium.exclusive_devices) == {"ev", "heat_pump"}
    assert belgium.exclusive_slots[0].price_eur_per_kwh < _price_at(belgium, 2, 0)
    flat = load_tariff("flat")
    assert len({_price_at(flat, h / 4, d) for h in range(96) for d in range(7)}) == 1


def _write(tmp_path, data):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base():
    return {"name": "t", "prosumers": [{"count": 3}]}


MALFORMED = [
    ("unknown link name", {"links": {"prosumer": {"kind": "blockchain"}}}, "links.prosumer", "gateway"),
    ("negative battery capacity", {"prosumers": [{"count": 3, "battery": {"capacity_kwh": {"low": -5, "high": 10}}}]},
     "prosumers[0].battery.capacity_kwh.low", "greater than 0"),
    ("PTU of 7 minutes", {"time": {"ptu_minutes": 7}}, "time.ptu_minutes", "15, 30 or 60"),
    ("departure before arrival", {"prosumers": [{"count": 3, "ev": {"arrival_hour_mean": 18, "departure_hour_mean": 7}}]},
     "prosumers[0].ev", "departure_hour_mean"),
    ("empty prosumer list", {"prosumers": []}, "prosumers", "at least 1"),
    ("wrong type", {"time": {"days": "two"}}, "time.days", "integer"),
    ("unknown field", {"feeder": {"source": "synthetic", "voltage_kv": 0.4}}, "feeder.voltage_kv", "Extra inputs"),
    ("penetration above one", {"prosumers": [{"count": 3, "penetration": {"pv": 1.5}}]},
     "prosumers[0].penetration.pv", "less than or equal to 1"),
    ("range low above high", {"prosumers": [{"count": 3, "pv": {"kwp": {"low": 9, "high": 3}}}]},
     "prosumers[0].pv.kwp", "must not exceed"),
    ("named feeder missing", {"feeder": {"source": "named"}}, "feeder", "feeder.name is required"),
    ("unknown named feeder", {"feeder": {"source": "named", "name": "atlantis"}}, "feeder.name", "kerber_dorfnetz"),
    ("voltage band inverted", {"feeder": {"v_min_pu": 0.99, "v_max_pu": 1.0}}, "feeder", None),
    ("unknown tariff", {"markets": {"retail_tariff": "free_beer"}}, "markets.retail_tariff", "unknown tariff"),
    ("zero prosumers", {"prosumers": [{"count": 0}]}, "prosumers[0].count", "greater than or equal to 1"),
    ("too many rounds", {"links": {"prosumer": {"kind": "iterative", "max_rounds": 50}}},
     "links.prosumer.iterative.max_rounds", "less than or equal to 20"),
    ("isolated cap range inverted", {"links": {"dso": {"kind": "isolated", "min_cap_kw": 40, "no_cap_kw": 30}}},
     "links.dso.isolated", "min_cap_kw"),
    ("link not run yet", {"links": {"dso": {"kind": "flex_market"}}}, "links.dso.kind", "not run by the engine yet"),
    ("appliance longer than half a day", {"prosumers": [{"count": 3, "appliance": {"duration_h": {"low": 1, "high": 30}}}]},
     "prosumers[0].appliance", "duration_h"),
    ("unknown EMS", {"energy_box": {"ems": "milp"}}, "energy_box.ems", "'lp' or 'descent'"),
    ("soc bounds inverted", {"prosumers": [{"count": 3, "battery": {"soc_min_pct": 90, "soc_max_pct": 20}}]},
     "prosumers[0].battery", "soc_min_pct"),
]


@pytest.mark.parametrize("label,patch,field,hint", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_the_field(tmp_path, label, patch, field, hint):
    data = {**_base(), **patch}
    if data.get("feeder", {}).get("v_min_pu") == 0.99:
        data["feeder"]["v_max_pu"] = 0.99  # equal limits: no band left
    with pytest.raises(ScenarioError) as err:
        load(_write(tmp_path, data))
    message = str(err.value)
    assert "bad.yaml" in message
    assert field in message, message
    if hint:
        assert hint in message, message


def test_error_shows_the_bad_value(tmp_path):
    with pytest.raises(ScenarioError, match=r"time.ptu_minutes = 7"):
        load(_write(tmp_path, {**_base(), "time": {"ptu_minutes": 7}}))


def test_unknown_preset_lists_presets():
    with pytest.raises(ScenarioError, match="teaching10"):
        load("no_such_preset")


def test_overrides_apply_dotted_paths():
    scenario = load("teaching10", {"time.days": 3, "seed": 42, "links.prosumer": {"kind": "gateway"}})
    assert scenario.time.days == 3 and scenario.seed == 42 and scenario.links.prosumer.kind == "gateway"
    with pytest.raises(ScenarioError, match="time.days"):
        load("teaching10", {"time.days": 0})


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\nprosumers: [{count: 1}]\n")
    with pytest.raises(yaml.YAMLError):
        load(path)


def test_tariff_must_cover_every_hour(tmp_path):
    path = tmp_path / "gap.yaml"
    path.write_text(yaml.safe_dump({"name": "gap", "slots": [{"from_hour": 8, "to_hour": 20, "price_eur_per_kwh": 0.3}]}))
    with pytest.raises(ScenarioError, match="without a price"):
        load_tariff(path)
