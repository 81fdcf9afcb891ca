"""What each `runletter` verb does, one module per verb, each a service that returns data.

The shape is MkDocs's (`mkdocs/__main__.py` over `mkdocs/commands/`): the click wiring —
options, prompts, progress bars and every line printed — stays in `publisher/cli/` (one
module per group of verbs), and each verb there calls a function here that takes the
project and the options and returns plain data (a frozen dataclass, a path, an Edition).
Nothing in this package imports click or prints, so a verb can be called from Python and
tested on its data.

    build        commands/build.py        the web archive
    render       commands/render.py       one edition of a post
    check        commands/check.py        every edition of some posts, before sending
    new          commands/new.py          a post or an exercise from a template
    init         commands/init.py         a new newsletter from the skeleton
    subscribers  commands/subscribers.py  import, add, remove, list, export readers
    audience     commands/audience.py     active readers per segment
    publish      commands/publish.py      plan, test copy, send, rebuild the archive
    report       commands/report.py       the ledger of a post per segment and state
    layouts      commands/layouts.py      the built-in layouts, and ejecting one
    due          commands/due.py          scheduled posts and sequence steps, due now or ahead
    db           commands/db.py           the store's schema, status and copy

Two verbs are subsystems of their own, `preview` (publisher/preview/) and `serve`
(publisher/serve/); their click commands are `cli/preview.py` and `cli/serve.py`.
"""
