"""Appeals after the dialog: encrypted packages, sending by email, the platform's replies, and
operators' statuses.

    package.py     the encrypted package (write, read, export, delete, retention)
    crypto.py      the key and the vault (Fernet)
    delivery.py    the RFC 5322 email and SMTP;  sender.py: the send queue
    imap.py        the platform's replies (IMAP), matched to their appeal
    status.py      operators' statuses (CLI, #appeal, console) and an appeal's thread
    supplement.py  需补充 requests and the package's later versions
    cli.py         `python -m bot appeals`
"""
