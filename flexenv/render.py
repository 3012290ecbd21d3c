"""Figures: one day of scenario data (and, later, environment frames). matplotlib is imported lazily."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_scenario_day(data, day: int = 0, path: str | Path | None = None, title: str = ""):
    """Plot one day of every generated profile of a `ScenarioData`; save to `path` if given.

    Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = data.grid
    if not 0 <= day < grid.n_days:
        raise ValueError(f"day {day} outside the episode's days 0..{grid.n_days - 1}")
    ppd = grid.ptus_per_day
    steps = slice(day * ppd, (day + 1) * ppd)
    hours = grid.hour_of_day[steps]

    fig, axes = plt.subplots(3, 2, figsize=(13, 10), constrained_layout=True)
    ax = axes[0, 0]
    load = data.load_kw[:, steps]
    for row in load[: min(5, load.shape[0])]:
        ax.step(hours, row, where="post", lw=0.8, alpha=0.6)
    ax.step(hours, load.mean(axis=0), where="post", color="k", lw=2, label="mean of all prosumers")
    ax.set(title="Inflexible household load", ylabel="kW")
    ax.legend(loc="upper left")

    ax = axes[0, 1]
    ax.step(hours, data.pv_kw_per_kwp[steps], where="post", color="orange", label="PV")
    ax.set(title="PV per kWp and outdoor temperature", ylabel="kW/kWp")
    twin = ax.twinx()
    twin.step(hours, data.outdoor_temp_degc[steps], where="post", color="tab:blue", label="temperature")
    twin.set_ylabel("°C")
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")

    ax = axes[1, 0]
    ax.step(hours, data.day_ahead_eur_per_kwh[steps], where="post", color="k", label="day-ahead")
    ax.step(hours, data.imbalance_short_eur_per_kwh[steps], where="post", color="tab:red", lw=0.8, label="imbalance short")
    ax.step(hours, data.imbalance_long_eur_per_kwh[steps], where="post", color="tab:green", lw=0.8, label="imbalance long")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(title="Wholesale prices", ylabel="€/kWh")
    ax.legend(loc="upper left")

    ax = axes[1, 1]
    ax.step(hours, data.reserve_activation_up[steps], where="post", color="tab:red", label="activated up")
    ax.step(hours, -data.reserve_activation_down[steps], where="post", color="tab:blue", label="activated down")
    ax.set(title="Reserve activations (fraction of commitment)", ylabel="fraction")
    twin = ax.twinx()
    twin.step(hours, data.reserve_capacity_eur_per_kw_h[steps], where="post", color="k", lw=0.8, label="capacity price")
    twin.set_ylabel("€/kW/h")
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")

    day_start = day * ppd
    ax = axes[2, 0]
    rows = np.flatnonzero(data.ev_arrival_ptu[:, day] >= 0)
    for y, p in enumerate(rows):
        start = (data.ev_arrival_ptu[p, day] - day_start) * grid.dt_h
        end = (data.ev_departure_ptu[p, day] - day_start) * grid.dt_h
        ax.barh(y, end - start, left=start, color="tab:purple", alpha=0.7)
        ax.text(start, y, f" {data.ev_energy_needed_kwh[p, day]:.0f} kWh", va="center", fontsize=7)
    ax.set(title="EV sessions (bars past 24 h continue next day)", xlabel="hour", ylabel="prosumer with EV")
    _label_rows(ax, rows)

    ax = axes[2, 1]
    rows = np.flatnonzero(data.appliance_earliest_start_ptu[:, day] >= 0)
    for y, p in enumerate(rows):
        start = (data.appliance_earliest_start_ptu[p, day] - day_start) * grid.dt_h
        latest = (data.appliance_latest_start_ptu[p, day] - day_start) * grid.dt_h
        run_h = data.fleet.appliance_duration_ptu[p] * grid.dt_h
        ax.barh(y, latest + run_h - start, left=start, color="tab:green", alpha=0.35)
        ax.barh(y, run_h, left=start, color="tab:green", alpha=0.9)
    ax.set(title="Appliance windows (dark: run if started earliest)", xlabel="hour", ylabel="prosumer")
    _label_rows(ax, rows)

    for a in axes.flat:
        a.set_xlim(0, 24 if a not in (axes[2, 0],) else 36)
        a.grid(alpha=0.3)
    fig.suptitle(title or "scenario data")
    if path is not None:
        fig.savefig(path, dpi=90)
        plt.close(fig)
    return fig


def _label_rows(ax, prosumers: np.ndarray, max_labels: int = 20) -> None:
    """Label bar rows with prosumer indices, thinned so that labels stay readable."""
    step = max(1, int(np.ceil(len(prosumers) / max_labels)))
    ticks = np.arange(0, len(prosumers), step)
    ax.set_yticks(ticks, [str(prosumers[i]) for i in ticks])


LIGHTS = ("green", "yellow", "orange", "red")


def ansi_frame(engine, info: dict | None) -> str:
    """A text frame of batch row 0: phase, prices, portfolio, grid state and each prosumer."""
    e = engine
    if info is None:
        return f"{e.scenario.name}: reset, next phase {e.current.phase}\n"
    lines = [f"{e.scenario.name}  day {info['day']}  {info['phase']} {info['index']}  "
             f"({e.scenario.links.prosumer.kind} / {e.scenario.links.dso.kind})"]
    kpis = info["kpis"]
    if kpis:
        g = info["day"] * e.ppd + info["index"]
        net = kpis["net_kw"][0]
        lines.append(f"  day-ahead {e.day_ahead[0, g]:.3f} €/kWh  position {kpis['position_kw'][0]:7.2f} kW  "
                     f"portfolio {net.sum():7.2f} kW  imbalance {kpis['deviation_kw'][0]:+.2f} kW")
        vm = kpis["vm_pu"][0][e.lv_bus]
        lines.append(f"  grid: vm {vm.min():.3f}..{vm.max():.3f} p.u.  lines max {kpis['line_loading_pct'][0].max():5.1f} %  "
                     f"trafo {kpis['trafo_loading_pct'][0]:5.1f} %  losses {kpis['losses_kw'][0]:.2f} kW  "
                     f"light {LIGHTS[int(kpis['traffic_light'][0])]}")
        lines.append("  prosumer   net kW  battery    EV   heat pump    PV  appliance  SoC   T_in")
        soc = np.divide(e.battery_kwh[0], e.battery.capacity_kwh, out=np.zeros(e.P), where=e.battery.capacity_kwh > 0)
        for p in range(e.P):
            d = kpis["device_kw"][0, p]
            lines.append(f"  {p:8d} {net[p]:8.2f} {d[0]:8.2f} {d[1]:6.2f} {d[2]:10.2f} {d[3]:6.2f} {d[4]:9.2f} "
                         f"{soc[p]:5.2f} {e.indoor_temp_degc[0, p]:6.1f}")
    money = {k: float(v[0]) for k, v in info["ledger"].flows.items()}
    if money:
        lines.append("  payments €: " + ", ".join(f"{k} {v:.3f}" for k, v in money.items()))
    return "\n".join(lines) + "\n"


def rgb_frame(engine) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8 of batch row 0: feeder voltages and loading, prices, devices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = engine
    fig, axes = plt.subplots(2, 2, figsize=(8, 6), dpi=80, constrained_layout=True)
    vm = e.last_vm_pu[0][e.lv_bus]
    ax = axes[0, 0]
    ax.bar(np.arange(vm.size), vm - 1.0, color="tab:blue")
    fc = e.scenario.feeder
    ax.axhline(fc.v_max_pu - 1, color="r", lw=0.8)
    ax.axhline(fc.v_min_pu - 1, color="r", lw=0.8)
    ax.set(title="bus voltage − 1 (p.u.)", xlabel="LV bus")
    ax = axes[0, 1]
    ax.bar(np.arange(e.feeder.n_line), e.last_line_loading[0], color="tab:orange", label="lines")
    ax.axhline(e.last_trafo_loading[0], color="k", lw=1.5, label="transformer")
    ax.set(title=f"loading (%), light {LIGHTS[int(e.traffic_light[0])]}", xlabel="line")
    ax.legend(loc="upper right")
    ax = axes[1, 0]
    steps = e.day_steps
    hours = np.arange(e.ppd) * e.dt_h
    ax.step(hours, e.day_ahead[0, steps], where="post", label="day-ahead")
    if e.signals is not None:
        ax.step(hours, e.signals.import_price[0].mean(axis=0), where="post", label="prosumer import price")
    step = e.schedule[min(e.k, e.n_steps - 1)]
    if step.phase == "operate":
        ax.axvline(step.index * e.dt_h, color="grey", lw=0.8)
    ax.set(title="prices (€/kWh)", xlabel="hour")
    ax.legend(loc="upper left", fontsize=7)
    ax = axes[1, 1]
    soc = np.divide(e.battery_kwh[0], e.battery.capacity_kwh, out=np.zeros(e.P), where=e.battery.capacity_kwh > 0)
    ax.bar(np.arange(e.P) - 0.2, soc, width=0.4, label="battery SoC")
    band = e.heat_pump.t_max_degc - e.heat_pump.t_min_degc
    ax.bar(np.arange(e.P) + 0.2, (e.indoor_temp_degc[0] - e.heat_pump.t_min_degc) / band, width=0.4, label="T_in in band")
    ax.set(title="devices", xlabel="prosumer", ylim=(-0.5, 1.5))
    ax.legend(loc="upper right", fontsize=7)
    fig.canvas.draw()
    frame = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return frame
