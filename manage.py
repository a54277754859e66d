"""Operator commands.

uv run manage.py migrate                      apply database migrations
uv run manage.py create-admin EMAIL           create an admin (or promote an account);
                                              the password comes from KILN_ADMIN_PASSWORD
                                              or is asked for
uv run manage.py sweep                        run the sweeper once
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os

from runtime import start_runtime, stop_runtime
from services import auth
from settings import get_settings


async def _run(args: argparse.Namespace) -> None:
    settings = get_settings()
    await start_runtime(settings, migrate=args.command == "migrate" or settings.migrate_on_start)
    try:
        if args.command == "create-admin":
            password = os.environ.get("KILN_ADMIN_PASSWORD") or getpass.getpass("Password: ")
            user = await auth.create_admin(args.email, password, settings)
            print(f"admin {user.email} ({user.id})")
        else:
            print("migrations applied")
    finally:
        await stop_runtime()


def main() -> None:
    parser = argparse.ArgumentParser(description="Kiln operator commands")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    admin = commands.add_parser("create-admin", help="create or promote an admin")
    admin.add_argument("email")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
