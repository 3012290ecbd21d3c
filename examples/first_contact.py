"""First contact with flexenv: make an environment, run a random aggregator for one day, render.

    python examples/first_contact.py            # prints ANSI frames and the episode KPIs
    python examples/first_contact.py --png day.png   # also saves the last frame as an image

Everything but the aggregator runs its built-in policy (the DSO's tariffs, the prosumers' energy
boxes). The aggregator's action is a price curve for the day plus a day-ahead position correction,
all in [-1, 1]; random values are a poor policy, and the system cost shows it.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # no thread oversubscription on a small shared machine
import argparse

import numpy as np

import flexenv
from flexenv.wrappers import single_agent

parser = argparse.ArgumentParser()
parser.add_argument("--env-id", default="PriceDriven-Tariff-Teaching10-v0")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--png", default="")
args = parser.parse_args()

env = flexenv.make(args.env_id, render_mode="ansi")
print("agents:", env.possible_agents)
print("aggregator action fields:\n" + env.describe_action("aggregator_1"))

view = single_agent(env, "aggregator_1", reward="system")  # Gymnasium env: the others are built-in
view.action_space.seed(args.seed)
obs, info = view.reset(seed=args.seed)
total, steps = 0.0, 0
while True:
    obs, reward, terminated, truncated, info = view.step(view.action_space.sample())
    total += reward
    steps += 1
    if steps in (1, 2, 50):  # planning steps, then a PTU in the afternoon
        print(view.render())
    if terminated or truncated:
        break
print(f"{steps} steps, system cost of the day: {-total:.2f} €")
print({k: round(v, 2) for k, v in info["episode"].items() if isinstance(v, float)})

if args.png:  # the same day with the built-in policies, rendered as an image
    import matplotlib.pyplot as plt

    rgb = flexenv.make(args.env_id, render_mode="rgb_array")
    observations, _ = rgb.reset(seed=args.seed)
    while rgb.agents:
        observations, *_ = rgb.step(rgb.builtin_actions(observations))
    plt.imsave(args.png, np.asarray(rgb.render()))
    print("wrote", args.png)
