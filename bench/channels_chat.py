"""Django Channels' side of benches/compare.sh: the Channels tutorial's chat, on its in-memory
layer, served by daphne. Same protocol as switchboard's chat example and the axum baseline:
/ws/chat/<room>/?name=.., {"message": ".."} in, {"message", "user", "time"} out to the room.

PYTHONPATH=bench daphne -b 127.0.0.1 -p 8002 channels_chat:application

With REDIS_URL=redis://HOST:PORT set, the layer is channels_redis's RedisChannelLayer on that
server instead (several daphne processes then share rooms), as benches/redis_compare.sh runs it.
"""
import os
import time
from urllib.parse import parse_qs

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["channels"],
    # Capacity 1000, as switchboard's chat and the axum baseline (1024): Channels' default of 100
    # would drop messages silently under a window of 160 in flight.
    CHANNEL_LAYERS={"default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer",
         "CONFIG": {"hosts": [os.environ["REDIS_URL"]], "capacity": 1000}}
        if os.environ.get("REDIS_URL") else
        {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}})},
)
django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.group = "chat_" + self.scope["url_route"]["kwargs"]["room"]
        query = parse_qs(self.scope["query_string"].decode())
        self.user = query.get("name", ["anonymous"])[0]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content):
        await self.channel_layer.group_send(self.group, {
            "type": "chat.message",
            "message": content["message"],
            "user": self.user,
            "time": int(time.time() * 1000),
        })

    async def chat_message(self, event):
        await self.send_json({"message": event["message"], "user": event["user"], "time": event["time"]})


application = ProtocolTypeRouter({
    "websocket": URLRouter([path("ws/chat/<str:room>/", ChatConsumer.as_asgi())]),
})
