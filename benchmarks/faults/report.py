"""Headline figures and the Markdown report of a fault campaign."""
from __future__ import annotations

from typing import Any


def figures(res: dict[str, Any]) -> dict[str, Any]:
    """The four figures the campaign publishes, from the sections' raw results."""
    injected = survived = 0
    crash = res.get("crash")
    if crash:
        injected += crash["kills"]
        survived += crash["kills_survived"]
    numeric = res.get("numeric") or []
    injected += sum(1 for r in numeric if r.get("injected"))
    survived += sum(1 for r in numeric if r.get("survived"))
    disk = [r for r in res.get("disk") or [] if "skipped" not in r]
    injected += len(disk)
    survived += sum(1 for r in disk if r.get("survived"))
    fuzz = (res.get("fuzz") or {}).get("total", {})
    crafted = (res.get("security") or {}).get("crafted") or []
    lost = [r["steps_lost"] for r in numeric if r.get("steps_lost") is not None]
    lag = [r["lag_steps"] for r in numeric if r.get("lag_steps") is not None]
    ratios = [r["val_ratio"] for r in numeric if r.get("kind") == "nan" and r.get("recovered")]
    return {
        "faults_injected": injected,
        "faults_survived": survived,
        "kills_during_save": crash["kills_during_save"] if crash else 0,
        "kills_landed_inside_save": crash["landed_inside_save"] if crash else 0,
        "kills_mid_training": crash["kills_anywhere"] if crash else 0,
        "resumed_bit_identical": crash["resumed_bit_identical"] if crash else None,
        "max_steps_lost_exact": max(lost) if lost else None,
        "max_steps_behind_val_loss": max(lag) if lag else None,
        "worst_val_ratio_nan": (round(max(ratios), 3) if ratios else None),
        "fuzz_cases": fuzz.get("cases", 0),
        "fuzz_unhandled": fuzz.get("unhandled", 0),
        "fuzz_poor_messages": fuzz.get("poor_messages", 0),
        "fuzz_state_changed": fuzz.get("state_changed", 0),
        "fuzz_wrongly_accepted": fuzz.get("wrongly_accepted", 0),
        "fuzz_wrongly_refused": fuzz.get("wrongly_refused", 0),
        "crafted_refused": sum(1 for r in crafted if r.get("refused")),
        "crafted_total": len(crafted),
        "crafted_code_ran": sum(1 for r in crafted if r.get("code_ran")),
    }


def _yes(v: Any) -> str:
    return "yes" if v is True else ("**no**" if v is False else "-")


def markdown(res: dict[str, Any]) -> str:
    f = res["figures"]
    meta = res["meta"]
    lines = [
        "# Fault-injection campaign", "",
        f"Command: `{meta['command']}`; {meta['machine']}; {meta['wall_s']:.0f} s.", "",
        "## Figures", "",
        "| figure | value |", "|---|---|",
        f"| faults injected / survived | {f['faults_injected']} / {f['faults_survived']} |",
        f"| SIGKILL during `save` (landed inside the save) | {f['kills_during_save']} "
        f"({f['kills_landed_inside_save']}) |",
        f"| SIGKILL mid-training, then resume | {f['kills_mid_training']}; final weights "
        f"bit-identical: {_yes(f['resumed_bit_identical'])} |",
        f"| steps of progress lost per numeric fault, max (exact weight match) | "
        f"{f['max_steps_lost_exact']} |",
        f"| final validation loss vs the clean run, worst NaN/Inf fault | "
        f"{f['worst_val_ratio_nan']} |",
        f"| fuzz cases run / unhandled exceptions | {f['fuzz_cases']} / {f['fuzz_unhandled']} |",
        f"| fuzz: multi-line or unnamed messages / bad values accepted / valid values refused "
        f"/ refused loads that changed the trainer | {f['fuzz_poor_messages']} / "
        f"{f['fuzz_wrongly_accepted']} / {f['fuzz_wrongly_refused']} / "
        f"{f['fuzz_state_changed']} |",
        f"| crafted checkpoints refused (code executed) | {f['crafted_refused']} / "
        f"{f['crafted_total']} ({f['crafted_code_ran']}) |", ""]
    crash = res.get("crash")
    if crash:
        lines += ["## Crashes (SIGKILL)", "",
                  f"{crash['kills']} kills of a training process that resumes from one "
                  f"checkpoint path ({crash['steps']} steps, MLP 784-{crash['hidden']}-10, "
                  f"checkpoint {crash['checkpoint_bytes'] or 0:,} bytes, mean save "
                  f"{1000 * (crash['mean_save_s'] or 0):.0f} ms).", "",
                  "| check | count |", "|---|---|",
                  f"| checkpoint loaded after the kill | {crash['loads_ok']} |",
                  f"| ... and equals the uninterrupted run at its step, bit for bit | "
                  f"{crash['loads_exact']} |",
                  f"| ... and is no older than the last finished save | "
                  f"{crash['no_older_than_last_save']} |",
                  f"| temp files left by killed saves | {crash['temps_found']} |",
                  f"| ... refused by `load_checked` | {crash['temps_refused']} |",
                  f"| ... complete (killed after fsync, before rename) | "
                  f"{crash['temps_complete']} |",
                  f"| ... mistaken for a good checkpoint | {crash['temps_mistaken']} |",
                  f"| ... removed by `remove_stale_temps` | {crash['temps_removed']} |",
                  f"| resumed run's final weights equal the uninterrupted run's | "
                  f"{_yes(crash['resumed_bit_identical'])} |", ""]
        if crash["failures"]:
            lines += ["Failures:", ""] + [f"- {x}" for x in crash["failures"]] + [""]
    numeric = res.get("numeric")
    if numeric:
        lines += ["## Numeric faults", "",
                  "Steps lost: largest distance between a faulted step and the clean-run step "
                  "whose weights it holds, byte for byte, after a recovery (a skipped batch "
                  "costs 1, a rollback to a snapshot 7 steps back costs 7). Behind: steps the "
                  "faulted run trails the clean run's best validation loss 10 steps after the "
                  "fault (negative: ahead); a noisy, indicative figure, since late in training "
                  "a tiny loss difference spans many steps.", "",
                  "| fault | at | recovered | source named (signal / finding) | val loss vs "
                  "clean | steps lost | behind | survived |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in numeric:
            lines.append(
                f"| {r['fault']} | {r.get('injected_at')} | {_yes(r.get('recovered'))} | "
                f"{_yes(r.get('signal_names_source'))} / {_yes(r.get('finding_names_source'))}"
                f" | {r.get('val_ratio', float('nan')):.3f} | {r.get('steps_lost')} | "
                f"{r.get('lag_steps')} | {_yes(r.get('survived'))} |")
        lines.append("")
        for r in numeric:
            if not r.get("survived"):
                lines.append(f"- **{r['fault']}**: error={r.get('error')}; signals: "
                             + "; ".join(t for _, t in r.get("signals", [])[:3]))
        lines.append("")
    disk = res.get("disk")
    if disk:
        lines += ["## Disk full, read-only, bad paths", "",
                  "| fault | clear error | state unchanged | previous checkpoint intact | "
                  "no temp left | training continues |", "|---|---|---|---|---|---|"]
        for r in disk:
            if "skipped" in r:
                lines.append(f"| {r['fault']} | skipped: {r['skipped']} | | | | |")
                continue
            lines.append(f"| {r['fault']} | {_yes(r['clear_error'])} | "
                         f"{_yes(r['state_unchanged'])} | {_yes(r['previous_intact'])} | "
                         f"{_yes(r['no_temp_left'])} | {_yes(r['continues'])} |")
        lines += ["", "Example message: `" + next(
            (r["message"].split(": ", 1)[-1] for r in disk if r.get("clear_error")), "") + "`",
                  ""]
    fuzz = res.get("fuzz")
    if fuzz:
        lines += ["## Fuzzing", "",
                  f"TOML loader fuzzed: `{fuzz['total']['toml_loader']}`.", "",
                  "| target | cases | accepted | refused (one line, named) | poor message | "
                  "unhandled | bad value accepted | valid value refused | refused but state "
                  "changed |", "|---|---|---|---|---|---|---|---|---|"]
        for k, v in fuzz.items():
            if k == "total":
                continue
            o = v["outcomes"]
            lines.append(f"| {k} | {v['cases']} | {o.get('ok', 0)} | {o.get('refused', 0)} | "
                         f"{o.get('poor-message', 0)} | {o.get('unhandled', 0)} | "
                         f"{o.get('wrongly-accepted', 0)} | {o.get('wrongly-refused', 0)} | "
                         f"{o.get('state-changed', 0)} |")
        lines.append("")
        ex = [f"{k}: {e}" for k, v in fuzz.items() if k != "total"
              for e in v.get("examples", [])[:3]]
        if ex:
            lines += ["Examples of failures (up to 3 per target):", ""]
            lines += [f"- `{e[:220].replace('`', chr(39))}`" for e in ex] + [""]
    sec = res.get("security")
    if sec:
        lines += ["## Security", "", "| crafted checkpoint | refused | code ran | payload "
                  "runs code under weights_only=False |", "|---|---|---|---|"]
        for r in sec["crafted"]:
            lines.append(f"| {r['payload']} | {_yes(r['refused'])} | {_yes(r['code_ran'])} | "
                         f"{_yes(r.get('payload_is_live'))} |")
        lines += ["", "| umask | item | mode | expected | world-writable |", "|---|---|---|---|---|"]
        for m in sec["modes"]:
            for name, v in m["items"].items():
                lines.append(f"| {m['umask']} | {name} | {v['mode']} | {v['expected']} | "
                             f"{_yes(v['world_writable'])} |")
        scan, net = sec["static_scan"], sec["runtime"]
        lines += ["", f"Network modules imported by the package: "
                      f"{', '.join(scan['network_imports']) or 'none'}. `pip download` command "
                      f"lines (the opt-in data set-up step): "
                      f"{', '.join(scan['pip_download_calls']) or 'none'}.",
                  f"With sockets and subprocesses blocked, ran: {', '.join(net['ran'])}; "
                  f"network attempts: {len(net['network_attempts'])}; error: {net['error']}.",
                  ""]
    return "\n".join(lines)
