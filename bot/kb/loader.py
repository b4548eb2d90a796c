"""Load, validate and merge the knowledge base: every *.yaml file of a knowledge dir.

All or nothing: any error raises KnowledgeError naming the file, the line and the reason,
and no partially loaded base is ever returned.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from bot.kb.errors import KnowledgeError
from bot.kb.responses import CHAT_FIELDS, check_dialog_knowledge, check_placeholders
from bot.kb.schema import KB_SCHEMA


@dataclass(frozen=True)
class Material:
    slot: str
    label: str
    optional: bool = False


@dataclass(frozen=True)
class AppealRoute:
    name: str  # online | email
    title: str
    how: str
    materials: tuple[Material, ...]
    email_subject: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    title: str
    remedy: str  # the source document's text, word for word ("原文")
    appeal: bool
    notes: tuple[str, ...] = ()  # note texts, resolved
    chat: str = ""  # the same content written for chat (short numbered steps); remedy when unset


@dataclass(frozen=True)
class Intent:
    name: str
    cues: tuple[str, ...]
    phrasings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """What the bot knows about one appeal item (or `route`): how to ask, why, what, where."""
    slot: str
    label: str
    aliases: tuple[str, ...]
    ask: str
    why: str
    what: str = ""
    where: str = ""


@dataclass(frozen=True)
class Faq:
    id: str
    answer: str
    phrasings: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()
    grounds: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    behaviour: bool = False
    seed_silent: bool = False


@dataclass(frozen=True)
class Prompt:
    id: int
    group: str
    text: str
    wildcard: str | None = None
    phrasings: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # the message must contain one of these to be matched to it


@dataclass(frozen=True)
class KnowledgeBase:
    version: str
    prompts: tuple[Prompt, ...]
    groups: dict[str, Group]
    routes: dict[str, AppealRoute]
    synonyms: dict[str, str] = field(default_factory=dict)  # variant -> canonical
    context_words: tuple[str, ...] = ()
    off_topic_words: tuple[str, ...] = ()
    failure_words: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    userdict: Path | None = None
    commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    intents: dict[str, Intent] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    faq: tuple[Faq, ...] = ()
    responses: dict[str, str] = field(default_factory=dict)

    def prompt(self, prompt_id: int) -> Prompt | None:
        return next((p for p in self.prompts if p.id == prompt_id), None)

    def group_of(self, prompt_id: int) -> Group | None:
        p = self.prompt(prompt_id)
        return self.groups.get(p.group) if p else None

    def diff(self, new: "KnowledgeBase") -> dict[str, list]:
        """What a reload to `new` changes: prompt ids added, removed, changed; FAQ entries changed."""
        before, after = self.summary(), new.summary()
        return {"added": sorted(after.keys() - before.keys()), "removed": sorted(before.keys() - after.keys()),
                "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
                "faq_changed": sorted(f.id for f in new.faq if f not in self.faq)}

    def summary(self) -> dict[int, tuple]:
        """A comparable fingerprint per prompt id, used to report what a reload changed."""
        out = {}
        for p in self.prompts:
            g = self.groups[p.group]
            out[p.id] = (p.text, p.group, p.phrasings, p.keywords, g.remedy, g.appeal, g.notes, p.requires)
        return out


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node, path) -> int | None:
    """1-based line of the YAML node at a jsonschema error path (deepest node that exists)."""
    node, line = root, root.start_mark.line + 1
    for part in path:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def _read_file(path: Path) -> tuple[dict, yaml.Node]:
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KnowledgeError(path, None, f"not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise KnowledgeError(path, None, f"cannot read: {exc.strerror}") from exc
    try:
        root = yaml.compose(raw, Loader=_LineLoader)
        data = yaml.load(raw, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise KnowledgeError(path, line, f"YAML error: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise KnowledgeError(path, None, f"YAML error: {exc}") from exc
    if root is None or not isinstance(data, dict):
        raise KnowledgeError(path, 1, "the file must be a YAML mapping (version, groups, prompts, ...)")
    validator = jsonschema.Draft202012Validator(KB_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = "/".join(map(str, err.absolute_path)) or "top level"
        raise KnowledgeError(path, _line_of(root, err.absolute_path), f"{where}: {err.message}")
    return data, root


def _requires_met(words, text: str) -> bool:
    """A prompt must satisfy its own `requires` list, or it could never match its own text."""
    from bot.matching.normalize import clean  # here: bot.matching imports bot.kb

    return any(clean(w) and clean(w) in clean(text) for w in words)


def _merge_learned(prompts, faq, learned_prompts, learned_faq):
    """Add the phrasings operators taught (learned.yaml) to their prompts and FAQ entries."""
    return (_add_phrasings(prompts, learned_prompts, "prompt {}"),
            _add_phrasings(faq, learned_faq, "FAQ entry {!r}"))


def _merge_learned_words(intents: dict, commands: dict, learned: list[tuple]) -> None:
    """Add the phrasings operators taught to intents (whole-message phrasings) and commands (phrases)."""
    for kind, name, phrase, path, line in learned:
        if kind == "intent":
            if name not in intents or name == "neutral":
                raise KnowledgeError(path, line, f"learned phrasing for unknown intent {name!r}")
            if phrase not in intents[name].phrasings:
                intents[name] = dataclasses.replace(intents[name], phrasings=(*intents[name].phrasings, phrase))
        else:
            if name not in commands:
                raise KnowledgeError(path, line, f"learned phrasing for unknown command {name!r}")
            if phrase not in commands[name]:
                commands[name] = (*commands[name], phrase)


def _add_phrasings(entries: list[tuple], learned: list[tuple], what: str) -> list[tuple]:
    """entries: (entry, path, line) with `.id` and `.phrasings`; learned: (id, phrase, path, line)."""
    index = {e.id: i for i, (e, _, _) in enumerate(entries)}
    for key, phrase, path, line in learned:
        if key not in index:
            raise KnowledgeError(path, line, f"learned phrasing for unknown {what.format(key)}")
        e, epath, eline = entries[index[key]]
        if phrase not in e.phrasings:
            entries[index[key]] = (dataclasses.replace(e, phrasings=(*e.phrasings, phrase)), epath, eline)
    return entries


def load_knowledge(knowledge_dir: Path | str) -> KnowledgeBase:
    """Load every *.yaml in a dir (or one file) into a validated KnowledgeBase."""
    kdir = Path(knowledge_dir)
    files = [kdir] if kdir.is_file() else sorted(kdir.glob("*.yaml")) + sorted(kdir.glob("*.yml"))
    if not files:
        raise KnowledgeError(kdir, None, "no knowledge file (*.yaml) found")
    versions, groups, notes, routes = [], {}, {}, {}
    prompts: list[tuple[Prompt, Path, int]] = []
    synonyms: dict[str, str] = {}
    context, off_topic, failure = [], [], []
    commands: dict[str, tuple[str, ...]] = {}
    intents: dict[str, Intent] = {}
    items: dict[str, Item] = {}
    faq: list[tuple[Faq, Path, int]] = []
    responses: dict[str, tuple[str, Path, int]] = {}
    learned_prompts: list[tuple[int, str, Path, int]] = []  # phrasings operators added (learned.yaml)
    learned_faq: list[tuple[str, str, Path, int]] = []
    learned_words: list[tuple[str, str, str, Path, int]] = []  # ("intent" | "command", name, phrase, path, line)
    digest = hashlib.sha256()
    for path in files:
        data, root = _read_file(path)
        digest.update(path.read_bytes())
        if "version" in data:
            versions.append(str(data["version"]))
        for name, g in data.get("groups", {}).items():
            if name in groups:
                raise KnowledgeError(path, _line_of(root, ["groups", name]), f"group {name!r} defined twice")
            groups[name] = (g, path, _line_of(root, ["groups", name]))
        notes.update(data.get("notes", {}))
        for rname, r in data.get("appeal_routes", {}).items():
            if rname in routes:
                raise KnowledgeError(path, _line_of(root, ["appeal_routes", rname]),
                                     f"appeal route {rname!r} defined twice")
            routes[rname] = AppealRoute(
                name=rname, title=r["title"], how=r["how"], email_subject=r.get("email_subject"),
                materials=tuple(Material(m["slot"], m["label"], bool(m.get("optional"))) for m in r["materials"]))
        m = data.get("matching", {})
        for canonical, variants in m.get("synonyms", {}).items():
            for v in variants:
                synonyms[v] = canonical
        context += m.get("context_words", [])
        off_topic += m.get("off_topic_words", [])
        failure += m.get("failure_words", [])
        for name, phrases in data.get("commands", {}).items():
            if name in commands:
                raise KnowledgeError(path, _line_of(root, ["commands", name]), f"command {name!r} defined twice")
            commands[name] = tuple(phrases)
        for name, it in data.get("intents", {}).items():
            if name in intents:
                raise KnowledgeError(path, _line_of(root, ["intents", name]), f"intent {name!r} defined twice")
            intents[name] = Intent(name, tuple(it["cues"]), tuple(it.get("phrasings", ())))
        for slot, it in data.get("items", {}).items():
            if slot in items:
                raise KnowledgeError(path, _line_of(root, ["items", slot]), f"item {slot!r} defined twice")
            items[slot] = Item(slot, it["label"], tuple(it["aliases"]), it["ask"].strip(), it["why"].strip(),
                               it.get("what", "").strip(), it.get("where", "").strip())
        for i, f in enumerate(data.get("faq", [])):
            faq.append((Faq(f["id"], f["answer"].strip(), tuple(f.get("phrasings", ())), tuple(f.get("cues", ())),
                            tuple(f.get("grounds", ())), tuple(f.get("settings", ())), bool(f.get("behaviour")),
                            bool(f.get("seed_silent"))), path, _line_of(root, ["faq", i])))
        for name, text in data.get("responses", {}).items():
            if name in responses:
                raise KnowledgeError(path, _line_of(root, ["responses", name]), f"response {name!r} defined twice")
            responses[name] = (text.strip("\n"), path, _line_of(root, ["responses", name]))
        learned = data.get("learned", {})
        for pid, phrases in learned.get("prompt_phrasings", {}).items():
            line = _line_of(root, ["learned", "prompt_phrasings", pid])
            learned_prompts += [(int(pid), ph, path, line) for ph in phrases]
        for fid, phrases in learned.get("faq_phrasings", {}).items():
            line = _line_of(root, ["learned", "faq_phrasings", fid])
            learned_faq += [(fid, ph, path, line) for ph in phrases]
        for kind in ("intent", "command"):
            for name, phrases in learned.get(f"{kind}_phrasings", {}).items():
                line = _line_of(root, ["learned", f"{kind}_phrasings", name])
                learned_words += [(kind, name, ph, path, line) for ph in phrases]
        for i, p in enumerate(data.get("prompts", [])):
            line = _line_of(root, ["prompts", i])
            if p.get("wildcard") and p["wildcard"] not in p["text"]:
                raise KnowledgeError(path, line, f"prompt {p['id']}: wildcard {p['wildcard']!r} is not in its text")
            if p.get("requires") and not _requires_met(p["requires"], p["text"]):
                raise KnowledgeError(path, line, f"prompt {p['id']}: none of its `requires` words is in its text")
            prompts.append((Prompt(
                id=p["id"], group=p["group"], text=p["text"].strip(), wildcard=p.get("wildcard"),
                phrasings=tuple(p.get("phrasings", ())), keywords=tuple(p.get("keywords", ())),
                requires=tuple(p.get("requires", ()))), path, line))

    seen: dict[int, tuple[Path, int]] = {}
    for p, path, line in prompts:
        if p.id in seen:
            first = seen[p.id]
            raise KnowledgeError(path, line, f"duplicate prompt id {p.id} (first at {first[0].name}:{first[1]})")
        seen[p.id] = (path, line)
        if p.group not in groups:
            raise KnowledgeError(path, line, f"prompt {p.id}: unknown group {p.group!r}")
    prompts, faq = _merge_learned(prompts, faq, learned_prompts, learned_faq)
    _merge_learned_words(intents, commands, learned_words)
    resolved: dict[str, Group] = {}
    for name, (g, path, line) in groups.items():
        missing = [n for n in g.get("notes", []) if n not in notes]
        if missing:
            raise KnowledgeError(path, line, f"group {name!r}: unknown note {missing[0]!r}")
        chat = g.get("chat", "").strip()
        check_placeholders(path, _line_of(root, ["groups", name, "chat"]) if chat else line,
                           f"group {name!r} chat", chat, CHAT_FIELDS)
        resolved[name] = Group(name=name, title=g["title"], remedy=g["remedy"].strip(), appeal=g["appeal"],
                               notes=tuple(notes[n] for n in g.get("notes", [])), chat=chat)
    for missing_route in {"online", "email"} - routes.keys():
        raise KnowledgeError(kdir, None, f"appeal route {missing_route!r} is not defined in any file")
    if "email" in routes and not routes["email"].email_subject:
        raise KnowledgeError(kdir, None, "appeal route 'email' needs an email_subject")
    if not versions:
        raise KnowledgeError(files[0], 1, "no file sets a version")
    check_dialog_knowledge(kdir, routes, commands, intents, items, faq, responses)
    userdict = kdir / "userdict.txt" if kdir.is_dir() else kdir.parent / "userdict.txt"
    return KnowledgeBase(
        version=f"{'+'.join(versions)} ({digest.hexdigest()[:8]})",
        prompts=tuple(sorted((p for p, _, _ in prompts), key=lambda p: p.id)),
        groups=resolved, routes=routes, synonyms=synonyms,
        context_words=tuple(dict.fromkeys(context)), off_topic_words=tuple(dict.fromkeys(off_topic)),
        failure_words=tuple(dict.fromkeys(failure)),
        files=tuple(str(f) for f in files), userdict=userdict if userdict.is_file() else None,
        commands=commands, intents=intents, items=items, faq=tuple(f for f, _, _ in faq),
        responses={name: text for name, (text, _, _) in responses.items()},
    )
