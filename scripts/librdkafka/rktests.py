#!/usr/bin/env python3
"""Helpers of scripts/librdkafka-tests.sh: the test catalogue (parsed from librdkafka's
tests/test.c), the run plan, parsing each test-runner log, and the final report.

Subcommands (all write to stdout):
  catalog --test-c tests/test.c --na not-applicable.txt   -> catalogue TSV
  list    --catalog catalog.tsv                           -> human-readable catalogue
  plan    --catalog catalog.tsv --categories broker,local [--select "0001 0045"] [--run-na]
                                                          -> units TSV (one test-runner run each)
  brief   --catalog ... --log unit.log --status S --names a,b --seconds N  -> one progress line
  report  --catalog ... --units unit-results.tsv --logs DIR --expected expected-pass.txt
          --results results.tsv [--strict] ...            -> summary; exit 1 on a regression
"""
import argparse
import os
import re
import sys
from collections import Counter, OrderedDict

# Catalogue columns.
CAT_COLS = ["name", "num", "category", "flags", "scenario", "minver", "na_reason", "extra"]
STATUSES = ["PASSED", "FAILED", "SKIPPED", "NOT_APPLICABLE"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------------------
# Catalogue
def split_args(s):
    """Splits a C macro argument list at top-level commas."""
    args, depth, cur, in_str = [], 0, [], False
    i = 0
    while i < len(s):
        c = s[i]
        if in_str:
            cur.append(c)
            if c == "\\":
                cur.append(s[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            cur.append(c)
        elif c in "({":
            depth += 1
            cur.append(c)
        elif c in ")}":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return args


def parse_tests_table(path):
    src = open(path, encoding="utf-8", errors="replace").read()
    start = src.index("struct test tests[] = {")
    end = src.index("{NULL}};", start)
    body = src[start:end]
    # Strip comments (the table has many); keep #if WITH_SOCKEM blocks (Linux builds sockem).
    body = re.sub(r"/\*.*?\*/", " ", body, flags=re.S)
    # (no // comments in the table; URLs in .extra strings contain "//")
    tests = []
    pos = 0
    while True:
        m = re.compile(r"_TEST\(").search(body, pos)
        if not m:
            break
        i, depth = m.end(), 1
        while depth:
            if body[i] == "(":
                depth += 1
            elif body[i] == ")":
                depth -= 1
            i += 1
        args = split_args(body[m.end():i - 1])
        pos = i
        name = args[0]
        flags_expr = args[1] if len(args) > 1 else "0"
        flags = []
        for tok in re.findall(r"TEST_F_\w+", flags_expr):
            # *_WIN32 / *_OSX known issues are 0 on Linux.
            if tok.endswith("_WIN32") or tok.endswith("_OSX"):
                continue
            flags.append(tok[len("TEST_F_"):].lower())
        minver, scenario, extra = "", "default", ""
        for a in args[2:]:
            v = re.match(r"TEST_BRKVER\((\d+),\s*(\d+),\s*(\d+),\s*(\d+)\)", a)
            if v:
                minver = ".".join(v.groups())
            elif a.strip() == "TEST_BRKVER_TOPIC_ADMINAPI":
                minver = "0.10.2.0"
            sm = re.match(r'\.scenario\s*=\s*"([^"]*)"', a)
            if sm:
                scenario = sm.group(1)
            em = re.match(r"\.extra\s*=\s*(.*)", a, re.S)
            if em:
                extra = " ".join(re.findall(r'"([^"]*)"', em.group(1)))
        tests.append(dict(name=name, num=name.split("_")[0], flags=",".join(flags) or "-",
                          scenario=scenario, minver=minver or "-", extra=extra or "-"))
    return tests


def load_na(path):
    na = OrderedDict()
    if not path or not os.path.exists(path):
        return na
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = re.split(r"\t+|\s{2,}", line.strip(), maxsplit=1)
        na[parts[0]] = parts[1] if len(parts) > 1 else "not applicable"
    return na


def category_of(t):
    flags = t["flags"].split(",")
    if "manual" in flags:
        return "manual"
    if "local" in flags or "_mock" in t["name"]:
        # A few mock-cluster tests are not flagged local but never touch the real broker.
        return "local"
    return "broker"


def cmd_catalog(a):
    na = load_na(a.na)
    tests = parse_tests_table(a.test_c)
    names = {t["name"] for t in tests}
    for n in na:
        if n not in names:
            print(f"warning: {a.na}: {n} is not a test in {a.test_c}", file=sys.stderr)
    print("\t".join(CAT_COLS))
    for t in tests:
        t["category"] = category_of(t)
        t["na_reason"] = na.get(t["name"], "-")
        if t["category"] == "manual" and t["na_reason"] == "-":
            t["na_reason"] = "manual test (TEST_F_MANUAL), not part of the automated suite"
        print("\t".join(t[c].replace("\t", " ") for c in CAT_COLS))


def read_catalog(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        hdr = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(hdr, line.rstrip("\n").split("\t"))))
    for r in rows:
        for k, v in r.items():
            if v == "-":
                r[k] = ""
    return rows


def cmd_list(a):
    cat = read_catalog(a.catalog)
    print(f"{'test':<50} {'category':<8} {'scenario':<13} {'flags':<18} not applicable because")
    for t in cat:
        print(f"{t['name']:<50} {t['category']:<8} {t['scenario']:<13} {t['flags'] or '-':<18} "
              f"{t['na_reason']}")
    c = Counter((t["category"], bool(t["na_reason"])) for t in cat)
    print()
    for (category, na), n in sorted(c.items()):
        print(f"  {category:<7} {'not applicable' if na else 'runnable':<15} {n}")


# --------------------------------------------------------------------------------------
# Plan
def selected(t, select):
    if not select:
        return True
    return any(t["name"] == s or t["num"] == s for s in select)


def static_status(t):
    """Status decided without running, or None to run it."""
    if t["na_reason"]:
        return ("NOT_APPLICABLE", t["na_reason"])
    if "known_issue" in t["flags"]:
        return ("SKIPPED", "librdkafka flags it TEST_F_KNOWN_ISSUE (its runner skips it by default)"
                + (f": {t['extra']}" if t["extra"] else ""))
    return None


def unit_scenario(t):
    sc = t["scenario"].split(",")
    return "default" if "default" in sc else sc[0]


def plan_units(cat, categories, select, run_na):
    units = OrderedDict()
    for t in cat:
        if t["category"] not in categories and not (t["category"] == "manual" and select):
            continue
        if not selected(t, select):
            continue
        st = static_status(t)
        if st and not (run_na and st[0] == "NOT_APPLICABLE"):
            continue
        local = t["category"] != "broker" and "local" in t["flags"].split(",")
        flag = "-l" if local else "-L"
        if t["category"] == "manual":
            flag = "-L"
        key = (t["num"], unit_scenario(t), flag)
        units.setdefault(key, []).append(t["name"])
    return units


def unit_id(num, scenario, flag):
    return f"{num}-{scenario}-{'local' if flag == '-l' else 'broker'}"


def cmd_plan(a):
    cat = read_catalog(a.catalog)
    select = [s for s in re.split(r"[\s,]+", a.select or "") if s]
    categories = set(a.categories.split(","))
    units = plan_units(cat, categories, select, a.run_na)
    # Broker-facing tests of the default scenario first, then the other scenarios (each
    # needs its own broker), then the local tests.
    def order(kv):
        (num, scenario, flag), names = kv
        return (flag == "-l", scenario != "default", scenario, num)

    for key, names in sorted(units.items(), key=order):
        num, scenario, flag = key
        print("\t".join([unit_id(num, scenario, flag), num, scenario, flag, ",".join(names)]))


# --------------------------------------------------------------------------------------
# Parsing one test-runner log
SUMMARY_START = re.compile(r"^TEST \d+ \(.*\) SUMMARY")
SUMMARY_ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*(\w+)\s*\|\s*([\d.]+)s\s*\|\s?(.*)$")
FAIL_HDR = re.compile(r'^### Test "([^"]*)" failed at (\S+) at .*###\s*$')
RUNNING = re.compile(r"=+ Running test (\S+) =+")
ENDED = re.compile(r"^\[\S+\s*/\s*([\d.]+)s\] =+ Test (\S+) (PASSED|FAILED|SKIPPED) =+")


def parse_log(path):
    """Returns (summary {name: (state, secs, text)}, failures {name: [lines]}, started set).

    The summary is the runner's final table; a test that ended before the runner was killed
    or aborted (no table) is taken from its "Test X PASSED/FAILED/SKIPPED" line."""
    summary, failures, started, ended = {}, {}, set(), {}
    if not os.path.exists(path):
        return summary, failures, started
    lines = [ANSI.sub("", l.rstrip("\n")) for l in open(path, encoding="utf-8", errors="replace")]
    in_sum = False
    for i, l in enumerate(lines):
        m = RUNNING.search(l)
        if m:
            started.add(m.group(1))
        m = ENDED.match(l)
        if m:
            ended[m.group(2)] = (m.group(3), float(m.group(1)), "")
        if SUMMARY_START.match(l):
            in_sum, cur = True, {}
            continue
        if in_sum:
            if l.startswith("#====") and cur:
                summary = cur
                in_sum = False
                continue
            m = SUMMARY_ROW.match(l)
            if m:
                cur[m.group(1)] = (m.group(2), float(m.group(3)), m.group(4).strip())
            continue
        m = FAIL_HDR.match(l)
        if m:
            full = m.group(1)
            base = full.split(" (")[0]
            msg = []
            for nxt in lines[i + 1:i + 4]:
                if not nxt.strip() or nxt.startswith(("[", "###", "|", "#", "test-runner:")):
                    break
                msg.append(nxt.strip())
            msg = " ".join(msg)
            failures.setdefault(base, []).append(f"{full}: {m.group(2)}: {msg}")
    for n, v in ended.items():
        summary.setdefault(n, v)
    return summary, failures, started


def unit_outcome(names, logpath, status, seconds, timeout):
    """Per-test (status, seconds, reason) for one unit."""
    summary, failures, started = parse_log(logpath)
    out = {}
    killed = status.startswith("timeout")
    for n in names:
        if status.startswith("deadline"):
            out[n] = ("SKIPPED", 0.0, "not run: the run's total time limit was reached")
            continue
        if n in summary:
            state, secs, text = summary[n]
            if state == "PASSED":
                out[n] = ("PASSED", secs, "")
            elif state == "SKIPPED":
                out[n] = ("SKIPPED", secs, text or "skipped by the test runner")
            elif state in ("FAILED", "RUNNING"):
                reason = text or (failures.get(n) or [""])[0]
                if not reason and killed:
                    reason = f"killed by the runner's {timeout}s timeout"
                if state == "RUNNING":
                    reason = f"still running when the test-runner stopped ({status}) " + reason
                out[n] = ("FAILED", secs, reason.strip())
            else:  # DNS: did not start
                out[n] = ("SKIPPED", 0.0, f"did not start ({status})")
            continue
        # No summary row: the process died (or was killed) before printing one.
        if n in started:
            if killed:
                reason = f"no result after {seconds}s: killed by the runner's per-test timeout"
            else:
                reason = f"test-runner exited ({status}) without a summary"
            if failures.get(n):
                reason += "; " + failures[n][0]
            out[n] = ("FAILED", float(seconds), reason)
        elif killed or status not in ("rc0", "rc1"):
            out[n] = ("SKIPPED", 0.0, f"not reached: the test-runner stopped ({status}) "
                                      "during an earlier test of this number")
        else:
            out[n] = ("SKIPPED", 0.0, "filtered by the test runner (not started)")
    return out


def cmd_brief(a):
    cat = {t["name"]: t for t in read_catalog(a.catalog)}
    names = a.names.split(",")
    res = unit_outcome(names, a.log, a.status, a.seconds, 0)
    c = Counter(s for s, _, _ in res.values())
    parts = [f"{s} {c[s]}" for s in STATUSES if c[s]]
    print(f"{a.seconds}s {', '.join(parts)}" + ("" if a.status in ("rc0", "rc1") else f" [{a.status}]"))
    for n, (s, _, why) in res.items():
        if s == "FAILED":
            print(f"      FAILED {n}: {why[:300]}")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------
# Report
def read_units(path):
    units = []
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            p = line.rstrip("\n").split("\t")
            if len(p) >= 6:
                units.append(dict(unit=p[0], num=p[1], scenario=p[2], status=p[3],
                                  seconds=int(p[4]), names=p[5].split(",")))
    return units


def load_list(path):
    out = []
    if path and os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line.split()[0])
    return out


def fmt_secs(s):
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def cmd_report(a):
    cat = read_catalog(a.catalog)
    by_name = {t["name"]: t for t in cat}
    units = read_units(a.units)
    ran = OrderedDict()
    for u in units:
        logpath = os.path.join(a.logs, u["unit"] + ".log")
        for n, (s, secs, why) in unit_outcome(u["names"], logpath, u["status"], u["seconds"],
                                               a.timeout).items():
            if by_name[n]["na_reason"]:
                why = (why + "; " if why else "") + "(classified n/a: " + by_name[n]["na_reason"] + ")"
            ran[n] = (s, secs, why, os.path.relpath(logpath, os.path.dirname(a.results)))
    run_nums = {u["num"] for u in units}
    rows = []
    for t in cat:
        n = t["name"]
        if n in ran:
            s, secs, why, lp = ran[n]
        else:
            st = static_status(t)
            if st is None:
                continue  # not selected in this run
            # Static entries are listed in full runs and for the numbers this run covered.
            if a.subset and t["num"] not in run_nums:
                continue
            s, why = st
            secs, lp = 0.0, ""
        rows.append(dict(name=n, num=t["num"], category=t["category"], status=s,
                         seconds=secs, reason=why, log=lp))

    with open(a.results, "w", encoding="utf-8") as f:
        f.write("name\tnum\tcategory\tstatus\tseconds\treason\tlog\n")
        for r in rows:
            f.write("\t".join([r["name"], r["num"], r["category"], r["status"],
                               f"{r['seconds']:.1f}", r["reason"].replace("\t", " "),
                               r["log"]]) + "\n")

    def table(title, subset):
        if not subset:
            return
        print(f"\n== {title} ({len(subset)})")
        for r in subset:
            why = r["reason"]
            if len(why) > 160:
                why = why[:157] + "..."
            print(f"  {r['name']:<48} {r['status']:<14} {r['seconds']:7.1f}s  {why}")

    for category, title in [("broker", "Broker-facing tests (against Strom)"),
                            ("local", "Local tests (no broker / mock cluster)"),
                            ("manual", "Manual tests")]:
        table(title, [r for r in rows if r["category"] == category])

    print("\n== Counts")
    print(f"  {'category':<8} " + " ".join(f"{s:>14}" for s in STATUSES) + f" {'total':>7}")
    for category in ["broker", "local", "manual"]:
        c = Counter(r["status"] for r in rows if r["category"] == category)
        if sum(c.values()):
            print(f"  {category:<8} " + " ".join(f"{c[s]:>14}" for s in STATUSES)
                  + f" {sum(c.values()):>7}")

    errs = {}
    errfile = os.path.join(os.path.dirname(a.results), "broker-errors.tsv")
    if os.path.exists(errfile):
        for line in open(errfile):
            p = line.rstrip("\n").split("\t")
            if len(p) == 4:
                errs.setdefault(p[0], []).append(f"{p[1]} {p[2]} x{p[3]}")
    unit_of = {}
    for u in units:
        for n in u["names"]:
            unit_of[n] = u["unit"]
    fails = [r for r in rows if r["status"] == "FAILED"]
    if fails:
        print("\n== Failures")
        for r in fails:
            print(f"  {r['name']}: {r['reason']}\n      log: {r['log']}")
            if errs.get(unit_of.get(r["name"])):
                print("      broker error responses: " + ", ".join(errs[unit_of[r["name"]]]))

    if a.broker_events and os.path.exists(a.broker_events):
        deaths = [l.strip() for l in open(a.broker_events) if "DIED" in l]
        print(f"\n== Broker: {len(deaths)} unexpected exit(s)")
        for d in deaths:
            print("  " + d)

    expected = load_list(a.expected)
    status_of = {r["name"]: r["status"] for r in rows}
    regressions = [n for n in expected if n in ran and status_of.get(n) != "PASSED"]
    unexpected_pass = [r["name"] for r in rows if r["status"] == "PASSED" and r["name"] not in expected]
    print("\n== Expected-pass check "
          f"({len([n for n in expected if n in ran])} of {len(expected)} listed tests ran)")
    if regressions:
        for n in regressions:
            print(f"  REGRESSION {n}: {status_of[n]} (listed in {os.path.basename(a.expected)})")
    else:
        print("  every listed test that ran passed")
    if unexpected_pass:
        print("  passing but not listed (add them to expected-pass.txt): " + " ".join(unexpected_pass))
    if a.run_seconds is not None:
        extra = (f" (the last build of the test runner took {fmt_secs(a.build_seconds)})"
                 if a.build_seconds is not None else "")
        print(f"\nrun time {fmt_secs(a.run_seconds)}{extra}; results: {a.results}")
    if regressions:
        return 1
    if a.strict and fails:
        return 1
    return 0


# --------------------------------------------------------------------------------------
# Broker error responses (strom_errors_total from the broker's /metrics)
ERR_LINE = re.compile(r'^strom_errors_total\{([^}]*)\}\s+([0-9.e+]+)')


def scrape(addr):
    import urllib.request
    out = {}
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except Exception as e:  # broker gone: no counts
        print(f"warning: scraping {addr}: {e}", file=sys.stderr)
        return out
    for line in text.splitlines():
        m = ERR_LINE.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[(labels.get("api", "?"), labels.get("code", "?"))] = float(m.group(2))
    return out


def cmd_scrape(a):
    for (api, code), v in sorted(scrape(a.addr).items()):
        print(f"{api}\t{code}\t{int(v)}")


def cmd_errdelta(a):
    def load(path):
        d = {}
        if os.path.exists(path):
            for line in open(path):
                p = line.rstrip("\n").split("\t")
                if len(p) == 3:
                    d[(p[0], p[1])] = int(p[2])
        return d
    before, after = load(a.before), load(a.after)
    for k in sorted(after):
        n = after[k] - before.get(k, 0)
        if n > 0:
            print(f"{a.unit}\t{k[0]}\t{k[1]}\t{n}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="cmd", required=True)
    c = sp.add_parser("catalog")
    c.add_argument("--test-c", required=True)
    c.add_argument("--na")
    c = sp.add_parser("list")
    c.add_argument("--catalog", required=True)
    c = sp.add_parser("plan")
    c.add_argument("--catalog", required=True)
    c.add_argument("--categories", default="broker,local")
    c.add_argument("--select")
    c.add_argument("--run-na", action="store_true")
    c = sp.add_parser("brief")
    c.add_argument("--catalog", required=True)
    c.add_argument("--log", required=True)
    c.add_argument("--status", required=True)
    c.add_argument("--names", required=True)
    c.add_argument("--seconds", type=int, default=0)
    c = sp.add_parser("report")
    c.add_argument("--catalog", required=True)
    c.add_argument("--units", required=True)
    c.add_argument("--logs", required=True)
    c.add_argument("--expected")
    c.add_argument("--results", required=True)
    c.add_argument("--timeout", type=int, default=300)
    c.add_argument("--run-seconds", type=int)
    c.add_argument("--build-seconds", type=int)
    c.add_argument("--broker-events")
    c.add_argument("--subset", action="store_true")
    c.add_argument("--strict", action="store_true")
    c = sp.add_parser("scrape")
    c.add_argument("--addr", required=True)
    c = sp.add_parser("errdelta")
    c.add_argument("--before", required=True)
    c.add_argument("--after", required=True)
    c.add_argument("--unit", required=True)
    a = p.parse_args()
    rc = {"catalog": cmd_catalog, "list": cmd_list, "plan": cmd_plan, "brief": cmd_brief,
          "report": cmd_report, "scrape": cmd_scrape, "errdelta": cmd_errdelta}[a.cmd](a)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
