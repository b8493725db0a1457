"""The window of sends a campaign keeps in flight (workflows/dispatch.py `send_window`): two
seconds of its number's rate, at most what the number's send worker runs at once, shared by
the campaigns sending on the number."""

from whatsapp_campaigns.workers.send_workers import MAX_CONCURRENT_SENDS
from whatsapp_campaigns.workflows.dispatch import MIN_WINDOW, send_window


def test_a_campaign_alone_on_its_number_keeps_two_seconds_of_the_rate_in_flight() -> None:
    assert send_window(80, campaigns_on_sender=1, slowed_down=False) == 160


def test_a_campaign_alone_on_a_fast_number_keeps_what_the_send_worker_runs_at_once() -> None:
    assert send_window(1000, campaigns_on_sender=1, slowed_down=False) == MAX_CONCURRENT_SENDS


def test_campaigns_on_one_number_share_its_window_evenly() -> None:
    assert send_window(1000, campaigns_on_sender=4, slowed_down=False) == 125


def test_the_shared_windows_together_stay_within_what_the_send_worker_runs_at_once() -> None:
    for campaigns in range(1, 51):
        window = send_window(1000, campaigns_on_sender=campaigns, slowed_down=False)
        assert campaigns * window <= MAX_CONCURRENT_SENDS


def test_a_campaign_keeps_a_minimum_window_however_many_share_its_number() -> None:
    assert send_window(80, campaigns_on_sender=100, slowed_down=False) == MIN_WINDOW


def test_after_a_throughput_limit_a_campaign_keeps_a_quarter_of_its_share() -> None:
    assert send_window(1000, campaigns_on_sender=2, slowed_down=True) == 62
