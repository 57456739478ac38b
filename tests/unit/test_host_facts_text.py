"""How discovered facts read in the host detail: filesystems as df counts them."""

from __future__ import annotations

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
