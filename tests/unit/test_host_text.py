"""How hosts read in the detail and in the audit log: filesystems as df counts them, edits."""

from __future__ import annotations

from itop_tui.domain.models import Host, host_change_detail
from itop_tui.widgets.host_facts import format_fact

GIB = 1024**3


def test_filesystem_use_is_of_the_room_users_have_as_df_counts_it() -> None:
    # 252 GiB in all, 23.6 GiB used, 75 GiB free for users (the rest reserved):
    # df says 24%, not the 9% that used/size gives.
    fs = {"mount": "/", "fstype": "ext4", "size": 252 * GIB, "used": int(23.6 * GIB),
          "avail": 75 * GIB}
    assert format_fact("filesystems", [fs]) == "/ ext4 252GiB 24% used"


def test_filesystem_without_avail_falls_back_to_the_size() -> None:
    fs = {"mount": "/data", "size": 40 * GIB, "used": 10 * GIB}
    assert format_fact("filesystems", [fs]) == "/data 40.0GiB 25% used"


def test_an_edit_is_audited_with_what_it_became_and_what_it_was() -> None:
    before = Host(name="db01", status="staging", host_class="vm", notes="")
    detail = host_change_detail(before, {"status": "production", "host_class": "server"})
    assert detail == {"status": "production", "class": "server",
                      "previous": {"status": "staging", "class": "vm"}}
