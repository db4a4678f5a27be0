from __future__ import annotations

from tests.conversations.helpers import finished_reply, is_done_frame, live


@live
def test_a_message_gets_a_streamed_and_stored_reply(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("Hello there, how are you today?")
    done = chat.until_done()
    assert is_done_frame(done.html)
    reply = finished_reply(conversation)
    assert reply.status == "complete", reply.error
    assert "offline emulator" in reply.text
