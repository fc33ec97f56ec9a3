"""The customer portal: accounts (this package's services) and its pages under ``/portal``.

    passwords.py   argon2id hashing and verification, rehash when the parameters change
    throttle.py    failed log-ins limited per email and per client address
    accounts.py    sign-up (closed | open | invite), welcome credit, log in, password change
    invites.py     the operator's invitations (POST /admin/invites, `gateway invites create`)

The services import nothing from the web layer, so the admin actions and the CLI can use them.
"""
