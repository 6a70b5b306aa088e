"""Explicit, configurable rules that classify an agent's proposed tool call as safe, review or dangerous.

The original bridge matched substrings ("rm", "dd", "sudo") anywhere in a command, so ``git add`` and
``npm run format`` needed review while ``rm -rf build/`` went through. Here a shell command is first
split into simple commands (``;``, ``&&``, ``||``, ``|``, newlines, ``$(...)``), wrappers such as
``env``, ``nohup`` or ``bash -c`` are looked through, and each rule names the *program* it is about
and a pattern over that program's arguments. The most severe matching rule decides; a command that
cannot be parsed needs review (never silently safe).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = ["PathRule", "Policy", "Risk", "ShellRule", "Verdict", "default_policy", "split_commands"]


class Risk(StrEnum):
    SAFE = "safe"  # approved at once
    REVIEW = "review"  # escalated to an expert
    DANGEROUS = "dangerous"  # rejected at once (or escalated, if the policy says so; never approved on timeout)

    @property
    def severity(self) -> int:
        return {"safe": 0, "review": 1, "dangerous": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Verdict:
    risk: Risk
    rule: str
    reason: str
    expert_role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"risk": self.risk.value, "rule": self.rule, "reason": self.reason, "expert_role": self.expert_role}


@dataclass(frozen=True, slots=True)
class ShellRule:
    """Matches a simple command whose program (basename) fully matches ``program`` and whose
    space-joined arguments match ``args`` (a ``re.search``; None: any arguments)."""

    name: str
    risk: Risk
    program: str
    args: str | None = None
    reason: str = ""
    expert_role: str | None = None
    _program: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _args: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "risk", Risk(self.risk))
        try:
            object.__setattr__(self, "_program", re.compile(self.program))
            object.__setattr__(self, "_args", re.compile(self.args) if self.args is not None else None)
        except re.error as exc:
            raise ValueError(f"rule {self.name!r}: bad pattern: {exc}") from None

    def matches(self, argv: Sequence[str]) -> bool:
        if not argv or not self._program.fullmatch(posixpath.basename(argv[0])):
            return False
        return self._args is None or bool(self._args.search(" ".join(argv[1:])))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "risk": self.risk.value, "program": self.program, "args": self.args,
                "reason": self.reason, "expert_role": self.expert_role}


@dataclass(frozen=True, slots=True)
class PathRule:
    """Matches a file path (normalised) by ``re.search``."""

    name: str
    risk: Risk
    pattern: str
    reason: str = ""
    expert_role: str | None = None
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "risk", Risk(self.risk))
        try:
            object.__setattr__(self, "_pattern", re.compile(self.pattern))
        except re.error as exc:
            raise ValueError(f"rule {self.name!r}: bad pattern: {exc}") from None

    def matches(self, path: str) -> bool:
        return bool(self._pattern.search(path))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "risk": self.risk.value, "pattern": self.pattern, "reason": self.reason,
                "expert_role": self.expert_role}


_SEPARATORS: Final[frozenset[str]] = frozenset({";", "&&", "||", "|", "&", "\n", "(", ")", ";;", "|&"})
_REDIRECTS: Final[frozenset[str]] = frozenset({">", ">>", ">|", "&>", "&>>", "2>", "2>>", "1>", "1>>"})
_WRAPPERS: Final[frozenset[str]] = frozenset(
    {"env", "nohup", "nice", "time", "timeout", "exec", "command", "builtin", "xargs", "stdbuf", "ionice", "watch"}
)
_SHELLS: Final[frozenset[str]] = frozenset({"sh", "bash", "zsh", "dash", "ksh"})
_SUBSTITUTION: Final[re.Pattern[str]] = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")


def split_commands(command: str) -> list[list[str]]:
    """The simple commands of a shell line as argv lists, looking through wrappers and ``sh -c``.

    Redirection targets are kept as pseudo commands ``[">", target]`` so that rules can judge writes
    to devices or protected paths. Raises ``ValueError`` when the line cannot be tokenised.
    """
    out: list[list[str]] = []
    pending = [command]
    depth = 0
    while pending:
        text = pending.pop()
        depth += 1
        if depth > 32:
            raise ValueError("shell command nests too deeply")
        for match in _SUBSTITUTION.finditer(text):
            pending.append(match.group(1) or match.group(2) or "")
        lexer = shlex.shlex(text.replace("\n", " ; "), posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = ""
        argv: list[str] = []
        tokens = list(lexer)
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token in _SEPARATORS:
                if argv:
                    out.append(argv)
                argv = []
            elif token in _REDIRECTS or (token.endswith(">") and token.rstrip(">").isdigit()):
                if i + 1 < len(tokens):
                    out.append([">", tokens[i + 1]])
                    i += 1
            elif token == "<":
                i += 1
            else:
                argv.append(token)
            i += 1
        if argv:
            out.append(argv)
    return [_unwrap(argv) for argv in out]


_ASSIGNMENT: Final[re.Pattern[str]] = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def _unwrap(argv: list[str]) -> list[str]:
    """Drop assignments and wrapper programs (``X=1 env nohup cmd`` -> ``cmd ...``)."""
    i = 0
    while i < len(argv):
        if _ASSIGNMENT.fullmatch(argv[i]):
            i += 1
        elif posixpath.basename(argv[i]) in _WRAPPERS:
            i += 1
            while i < len(argv) and (argv[i].startswith("-") or _ASSIGNMENT.fullmatch(argv[i])
                                     or argv[i].replace(".", "", 1).isdigit()):
                i += 1
        else:
            break
    return argv[i:] if i < len(argv) else argv


def _expand_shells(commands: list[list[str]]) -> list[list[str]]:
    """``bash -c 'rm -rf /'`` is judged as ``rm -rf /``."""
    out: list[list[str]] = []
    queue = list(commands)
    budget = 64
    while queue and budget:
        budget -= 1
        argv = queue.pop(0)
        out.append(argv)
        if argv and posixpath.basename(argv[0]) in _SHELLS:
            for k, word in enumerate(argv[1:-1], start=1):
                if word.startswith("-") and "c" in word:
                    queue.extend(split_commands(argv[k + 1]))
                    break
    return out


def _rules(specs: Iterable[Mapping[str, Any]], kind: type) -> tuple[Any, ...]:
    return tuple(kind(**dict(spec)) for spec in specs)


_REC = r"(?:^|\s)(?:-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)(?:\s|$)"
_ROOTISH = r"(?:^|\s)(?:/|~|\$HOME|\$\{HOME\}|\.\.(?:/|\s|$))"

DEFAULT_SHELL_RULES: Final[tuple[dict[str, Any], ...]] = (
    {"name": "privilege_escalation", "risk": "dangerous", "program": r"sudo|su|doas|pkexec",
     "reason": "runs commands as another user"},
    {"name": "destructive_delete", "risk": "dangerous", "program": r"rm",
     "args": rf"(?=.*{_REC})(?=.*{_ROOTISH})", "reason": "recursive delete outside the workspace"},
    {"name": "world_writable", "risk": "dangerous", "program": r"chmod",
     "args": r"(?:^|\s)(?:0?777|a\+rwx|ugo\+rwx|o\+w)(?:\s|$)", "reason": "makes files writable by everyone"},
    {"name": "ownership_change_system", "risk": "dangerous", "program": r"chown|chgrp",
     "args": r"(?:^|\s)/", "reason": "changes ownership outside the workspace"},
    {"name": "disk_destruction", "risk": "dangerous", "program": r"dd|mkfs(?:\.\w+)?|fdisk|sfdisk|parted|wipefs|mkswap",
     "reason": "writes raw disks or filesystems"},
    {"name": "device_write", "risk": "dangerous", "program": r">",
     "args": r"^/dev/(?!null$|stdout$|stderr$|tty$|fd/\d+$)", "reason": "writes to a device"},
    {"name": "protected_path_write", "risk": "dangerous", "program": r">|tee",
     "args": r"(?:^|\s)/(?:etc|usr|bin|sbin|boot|sys|proc|lib|lib64|var/lib)(?:/|\s|$)",
     "reason": "writes to a system path"},
    {"name": "power_control", "risk": "dangerous", "program": r"shutdown|reboot|halt|poweroff",
     "reason": "stops the machine"},
    {"name": "power_control_init", "risk": "dangerous", "program": r"init|telinit", "args": r"^[06]\b",
     "reason": "stops the machine"},
    {"name": "power_control_systemctl", "risk": "dangerous", "program": r"systemctl",
     "args": r"(?:^|\s)(?:poweroff|reboot|halt|kexec)\b", "reason": "stops the machine"},
    {"name": "process_kill", "risk": "dangerous", "program": r"kill", "args": r"(?:^|\s)-(?:9|KILL|SIGKILL)(?:\s|$)",
     "reason": "kills processes without letting them clean up"},
    {"name": "process_kill_by_name", "risk": "dangerous", "program": r"killall|pkill",
     "reason": "kills processes by name (may hit processes it does not own)"},
    {"name": "recursive_delete", "risk": "review", "program": r"rm", "args": _REC,
     "reason": "recursive delete in the workspace", "expert_role": "security_expert"},
    {"name": "file_delete", "risk": "review", "program": r"rm|rmdir|shred|unlink",
     "reason": "deletes files", "expert_role": "security_expert"},
    {"name": "remote_script", "risk": "review", "program": r"sh|bash|zsh|dash|python3?|perl|ruby",
     "args": r"^$|^-s?$", "reason": "runs a script from standard input (maybe downloaded)",
     "expert_role": "security_expert"},
    {"name": "ownership_change", "risk": "review", "program": r"chown|chgrp",
     "reason": "changes file ownership", "expert_role": "security_expert"},
    {"name": "privileged_container", "risk": "review", "program": r"docker|podman",
     "args": r"^run\b.*--privileged", "reason": "runs a privileged container", "expert_role": "security_expert"},
    {"name": "dependency_change", "risk": "review", "program": r"pip3?|npm|yarn|pnpm|apt-get|apt|gem|cargo",
     "args": r"^(?:install|add|i)\b", "reason": "changes dependencies", "expert_role": "architect"},
    {"name": "history_rewrite", "risk": "review", "program": r"git",
     "args": r"^(?:push\b.*(?:\s-f\b|--force)|reset\s+--hard\b|rebase\b|clean\b.*-[a-zA-Z]*f)",
     "reason": "rewrites or discards history", "expert_role": "architect"},
    {"name": "resource_heavy", "risk": "review", "program": r"ab|wrk|stress-ng|stress",
     "reason": "generates heavy load", "expert_role": "performance_expert"},
    {"name": "resource_heavy_perf", "risk": "review", "program": r"perf", "args": r"^record\b",
     "reason": "profiles the machine", "expert_role": "performance_expert"},
)

DEFAULT_PATH_RULES: Final[tuple[dict[str, Any], ...]] = (
    {"name": "protected_path", "risk": "dangerous",
     "pattern": r"^/(?:etc|usr|bin|sbin|boot|sys|proc|dev|lib|lib64|var/lib|root)(?:/|$)",
     "reason": "writes to a system path"},
    {"name": "outside_workspace", "risk": "review", "pattern": r"^(?:/|\.\./|~)",
     "reason": "writes outside the workspace", "expert_role": "security_expert"},
    {"name": "sensitive_config", "risk": "review",
     "pattern": r"(?:^|/)(?:\.github/workflows/[^/]+|Dockerfile|pyproject\.toml|\.env[^/]*)$",
     "reason": "changes build, CI or secrets configuration", "expert_role": "architect"},
)


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules the bridge applies. Build from JSON with :meth:`from_dict`; inspect with :meth:`to_dict`."""

    shell_rules: tuple[ShellRule, ...]
    path_rules: tuple[PathRule, ...]
    read_only_tools: frozenset[str] = frozenset({"Read", "Grep", "Glob", "LS", "NotebookRead"})
    file_tools: frozenset[str] = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
    shell_tools: frozenset[str] = frozenset({"Bash"})
    unknown_tool_expert: str = "security_expert"
    dangerous_action: str = "reject"  # or "escalate": an expert may allow it; a timeout never does

    def __post_init__(self) -> None:
        if self.dangerous_action not in ("reject", "escalate"):
            raise ValueError("dangerous_action must be 'reject' or 'escalate'")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Policy:
        if not isinstance(raw, Mapping):
            raise ValueError("a policy must be an object")
        base = default_policy()
        return cls(
            shell_rules=_rules(raw["shell_rules"], ShellRule) if "shell_rules" in raw else base.shell_rules,
            path_rules=_rules(raw["path_rules"], PathRule) if "path_rules" in raw else base.path_rules,
            read_only_tools=frozenset(raw.get("read_only_tools", base.read_only_tools)),
            file_tools=frozenset(raw.get("file_tools", base.file_tools)),
            shell_tools=frozenset(raw.get("shell_tools", base.shell_tools)),
            unknown_tool_expert=str(raw.get("unknown_tool_expert", base.unknown_tool_expert)),
            dangerous_action=str(raw.get("dangerous_action", base.dangerous_action)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "shell_rules": [r.to_dict() for r in self.shell_rules],
            "path_rules": [r.to_dict() for r in self.path_rules],
            "read_only_tools": sorted(self.read_only_tools),
            "file_tools": sorted(self.file_tools),
            "shell_tools": sorted(self.shell_tools),
            "unknown_tool_expert": self.unknown_tool_expert,
            "dangerous_action": self.dangerous_action,
        }

    def classify(self, tool: str, tool_input: Mapping[str, Any]) -> Verdict:
        """The verdict for one tool call. Never raises on odd input: odd input needs review."""
        if tool in self.read_only_tools:
            return Verdict(Risk.SAFE, "read_only_tool", f"{tool} only reads")
        if tool in self.file_tools:
            return self._classify_path(tool_input)
        if tool in self.shell_tools:
            return self._classify_shell(tool_input)
        return Verdict(Risk.REVIEW, "unknown_tool", f"no rule covers tool {tool!r}", self.unknown_tool_expert)

    def _classify_path(self, tool_input: Mapping[str, Any]) -> Verdict:
        raw = tool_input.get("file_path", tool_input.get("notebook_path"))
        if not isinstance(raw, str) or not raw.strip():
            return Verdict(Risk.REVIEW, "missing_path", "a file tool without a file path", self.unknown_tool_expert)
        path = posixpath.normpath(raw.strip())
        if raw.strip().startswith("//"):
            path = "/" + path.lstrip("/")
        return self._worst(
            (rule for rule in self.path_rules if rule.matches(path)),
            Verdict(Risk.SAFE, "workspace_write", "writes inside the workspace"),
        )

    def _classify_shell(self, tool_input: Mapping[str, Any]) -> Verdict:
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip():
            return Verdict(Risk.REVIEW, "missing_command", "a shell call without a command", self.unknown_tool_expert)
        try:
            commands = _expand_shells(split_commands(command))
        except ValueError as exc:
            return Verdict(Risk.REVIEW, "unparseable_command", f"cannot parse the command: {exc}",
                           self.unknown_tool_expert)
        matched = []
        for argv in commands:
            matched.extend(rule for rule in self.shell_rules if rule.matches(argv))
        return self._worst(matched, Verdict(Risk.SAFE, "benign_shell", "no rule matched"))

    @staticmethod
    def _worst(rules: Iterable[ShellRule | PathRule], fallback: Verdict) -> Verdict:
        best: ShellRule | PathRule | None = None
        for rule in rules:
            if best is None or rule.risk.severity > best.risk.severity:
                best = rule
        if best is None:
            return fallback
        return Verdict(best.risk, best.name, best.reason or best.name, best.expert_role)


def default_policy() -> Policy:
    return Policy(
        shell_rules=_rules(DEFAULT_SHELL_RULES, ShellRule),
        path_rules=_rules(DEFAULT_PATH_RULES, PathRule),
    )
