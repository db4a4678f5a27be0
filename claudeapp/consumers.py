from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from claudeapp.dbthreads import TidyDispatch


def user_group(user_id: int) -> str:
    """The channel-layer group that carries one user's notifications (every open tab)."""
    return f"user-{user_id}"


class UserEventsConsumer(TidyDispatch, AsyncJsonWebsocketConsumer):
    """Pushes server-side events (e.g. a document finished extracting) to a user's tabs.

    Anonymous sockets are refused before they are accepted.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def user_event(self, event: dict) -> None:
        await self.send_json(event["payload"])

    async def user_html(self, event: dict) -> None:
        # htmx's ws extension swaps HTML fragments that carry hx-swap-oob.
        await self.send(text_data=event["html"])
