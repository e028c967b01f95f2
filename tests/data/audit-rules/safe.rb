require "digest"
require "net/http"
require "open3"
require "yaml"

ROOT = File.realpath("/srv/files")

class UsersController < ApplicationController
  def find_user
    User.where("name = ?", params[:name])
    User.where(name: params[:name])
  end

  def ping
    Open3.capture2("ping", "-c", "1", params[:host])
  end

  def download
    path = File.expand_path(params[:name], ROOT)
    raise "outside the root" unless path.start_with?(ROOT + "/")
    send_file(path)
  end

  def load
    JSON.parse(request.body.read)
    YAML.safe_load(params[:state])
  end

  def fetch
    Net::HTTP.get(URI("https://api.example.com/items"))
  end

  def show
    render html: "<b>hello</b>".html_safe
  end

  def digest(password)
    Digest::SHA256.hexdigest(password)
  end

  def login(sid)
    cookies[:session] = { value: sid, secure: true, httponly: true }
  end
end
