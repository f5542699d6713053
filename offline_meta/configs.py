"""The configurations an offline build runs: named plans, read from a JSON list and checked up front.

Each entry of the list is one of

    {"name": str, "plan": <plan object>}                   # a plan written out
    {"name": str, "plan_file": path}                        # a plan file (path relative to this list)
    {"name": str, "plan_file": path, "steps": [<step>...]}  # the file's plan-wide settings, these steps
    {"name": str, "plan_file": path, "each_step": true}     # one one-step plan per step of the file,
                                                            # named "<name>/<index>-<member>"
    {"name": str, "plan_file": path, "members": [str...]}   # the file's plan, only these members' steps
    {"name": str, "plan_file": path, "step_order": [int...]} # the file's steps at these positions, in this
                                                            # order (alternatives to replay, offline_meta/subplans.py)
    {..., "step_rounds": {"<position>": int, ...}}         # with plan_file (alone or beside step_order):
                                                            # fewer rounds for the file's steps at these positions
    {..., "step_params": {"<position>": {...}, ...}}       # the same: these params merged into those steps'
    {..., "settings": {"pool_per_step": 2, ...}}            # with plan_file: these plan-wide settings replace
                                                            # the file's (any key of a plan but name and steps)

A one-step plan runs a single member in isolation (what the portfolio simulation
composes); a longer plan is run for real so the simulation can be checked against it.
`each_step`, `members` and `step_order` keep derived runs in step with a plan file that others edit. The build
stores the plans themselves, so a database never depends on files that change later.
"""

from __future__ import annotations

import json
from pathlib import Path

from portfolio.checks import is_int
from portfolio.meta_db import config_id
from portfolio.plans import PlanError, check_plan, keep_members


DERIVING_KEYS = {"steps", "each_step", "members", "step_order"}  # what makes a plan from a plan_file


class ConfigError(ValueError):
    """A configurations file breaks the format above; the message names the file and the entry."""


def _expand(entry, path: Path, index: int) -> list[tuple[str, dict]]:
    """(name, plan) pairs of one entry of the list, before any check of the plans."""
    where = f"{path}: configuration {index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ConfigError(f"{where} must be an object with a non-empty string name, got {entry!r}")
    where = f"{path}: configuration {entry['name']!r}"
    unknown = set(entry) - {"name", "plan", "plan_file", *STEP_EDITS, "settings", *DERIVING_KEYS}
    if unknown or ("plan" in entry) == ("plan_file" in entry):
        raise ConfigError(f"{where} must have a name and exactly one of plan, plan_file; got keys {sorted(entry)}")
    if "plan" in entry:
        if (DERIVING_KEYS | set(STEP_EDITS) | {"settings"}) & set(entry):
            raise ConfigError(f"{where}: {', '.join(sorted(DERIVING_KEYS | set(STEP_EDITS) | {'settings'}))} "
                              "go with plan_file, not plan")
        return [(entry["name"], entry["plan"])]
    plan_path = path.parent / entry["plan_file"]
    try:
        base = json.loads(plan_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{where}: cannot read plan_file {str(plan_path)!r} ({error})") from error
    if not isinstance(base, dict) or not isinstance(base.get("steps"), list):
        raise ConfigError(f"{where}: plan_file {str(plan_path)!r} must hold a plan object with a steps list")
    if "settings" in entry:
        settings = entry["settings"]
        if not isinstance(settings, dict) or not settings or {"name", "steps"} & set(settings):
            raise ConfigError(f"{where}: settings must be a non-empty object of plan-wide keys (not name or steps), "
                              f"got {settings!r}")
        base = {**base, **settings}
    if len(DERIVING_KEYS & set(entry)) > 1:
        raise ConfigError(f"{where}: {', '.join(sorted(DERIVING_KEYS))} exclude each other")
    for key, edit in STEP_EDITS.items():
        if key in entry:
            if (DERIVING_KEYS - {"step_order"}) & set(entry):
                raise ConfigError(f"{where}: {key} goes with plan_file alone or with step_order")
            base = _with_step_edits(base, key, entry[key], edit, where)
    if "steps" in entry:
        return [(entry["name"], {**base, "steps": entry["steps"]})]
    if "members" in entry:
        members = entry["members"]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ConfigError(f"{where}: members must be a list of member names, got {members!r}")
        try:
            return [(entry["name"], keep_members(base, members, where=where))]
        except PlanError as error:
            raise ConfigError(str(error)) from error
    if "step_order" in entry:
        order, n_steps = entry["step_order"], len(base["steps"])
        valid = isinstance(order, list) and order and all(is_int(i) for i in order)
        if not valid or len(set(order)) < len(order) or not all(0 <= i < n_steps for i in order):
            raise ConfigError(f"{where}: step_order must list distinct positions 0-{n_steps - 1} of the file's steps, "
                              f"got {order!r}")
        return [(entry["name"], {**base, "steps": [base["steps"][i] for i in order]})]
    if entry.get("each_step"):
        return [
            (f"{entry['name']}/{i}-{step.get('member') if isinstance(step, dict) else '?'}", {**base, "steps": [step]})
            for i, step in enumerate(base["steps"])
        ]
    return [(entry["name"], base)]


def _rounds_edit(step: dict, rounds) -> dict | None:
    return {**step, "rounds": rounds} if is_int(rounds, 1) else None


def _params_edit(step: dict, params) -> dict | None:
    return {**step, "params": {**step.get("params", {}), **params}} if isinstance(params, dict) and params else None


# Per-step edits of a plan_file's steps: key -> (edit(step, value) -> step or None if the value is wrong, rule).
STEP_EDITS = {
    "step_rounds": (_rounds_edit, "ints >= 1"),
    "step_params": (_params_edit, "non-empty objects of member params"),
}


def _with_step_edits(base: dict, key: str, edits, edit, where: str) -> dict:
    """`base` with the steps at the given positions (string keys, as JSON has them) edited (`STEP_EDITS`)."""
    apply, rule = edit
    n_steps = len(base["steps"])
    steps = list(base["steps"])
    valid = isinstance(edits, dict) and bool(edits)
    for position, value in (edits.items() if valid else ()):
        edited = apply(steps[int(position)], value) if position.isdigit() and int(position) < n_steps else None
        if edited is None:
            valid = False
            break
        steps[int(position)] = edited
    if not valid:
        raise ConfigError(f"{where}: {key} must map positions 0-{n_steps - 1} of the file's steps "
                          f"(as strings) to {rule}, got {edits!r}")
    return {**base, "steps": steps}


def load_configs(path: str | Path, members: dict | None = None) -> list[dict]:
    """`[{"name", "config_id", "plan"}]` in file order, each plan checked against `members`.

    `members` defaults to the portfolio registry (imported here, as it loads TensorFlow).
    """
    if members is None:
        from portfolio.registry import MEMBERS as members
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read configurations ({error})") from error
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: must hold a non-empty JSON list of configurations")
    configs, seen_names, seen_ids = [], set(), {}
    for index, entry in enumerate(entries):
        for name, plan in _expand(entry, path, index):
            where = f"{path}: configuration {name!r}"
            try:
                check_plan(plan, members, where=where)
            except PlanError as error:
                raise ConfigError(str(error)) from error
            plan = {**plan, "name": name}
            cid = config_id(plan)
            if name in seen_names:
                raise ConfigError(f"{where}: name used twice")
            if cid in seen_ids:
                raise ConfigError(f"{where}: same plan as {seen_ids[cid]!r} (config_id {cid})")
            seen_names.add(name)
            seen_ids[cid] = name
            configs.append({"name": name, "config_id": cid, "plan": plan})
    return configs
