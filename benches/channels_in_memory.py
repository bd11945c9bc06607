"""Channels' InMemoryChannelLayer, measured the way benches/layer.rs measures switchboard's:
a group_send plus every member's receive, with and without 10,000 unrelated channels.

python3 -m venv /tmp/chvenv && /tmp/chvenv/bin/pip install channels
taskset -c 0 /tmp/chvenv/bin/python benches/channels_in_memory.py
"""
import asyncio, time
from channels.layers import InMemoryChannelLayer

async def measure(unrelated, members, reps):
    layer = InMemoryChannelLayer()
    for i in range(unrelated):
        c = await layer.new_channel()
        await layer.group_add("others", c)
    room = [await layer.new_channel() for _ in range(members)]
    for c in room:
        await layer.group_add("room", c)
    msg = {"type": "chat.message", "message": "x" * 48}
    t = time.perf_counter()
    for _ in range(reps):
        await layer.group_send("room", msg)
        for c in room:
            await layer.receive(c)
    return (time.perf_counter() - t) / reps

async def main():
    for unrelated, members, reps in [(0, 100, 200), (10000, 100, 20), (0, 10000, 3)]:
        per = await measure(unrelated, members, reps)
        print(f"channels InMemoryChannelLayer group_send+receive: {members} members, {unrelated} unrelated: {per*1e6:.1f} us per broadcast")
asyncio.run(main())
