"""Reports for operators computed from the store, with no personal data in them.

    funnel.py   the appeal funnel: where creators give up, per prompt group and in total
    cli.py      python -m bot stats [--json] [--since YYYY-MM-DD] [--until YYYY-MM-DD]
"""
