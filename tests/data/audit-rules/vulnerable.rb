require "digest"
require "net/http"
require "yaml"

class UsersController < ApplicationController
  def find_user
    User.where("name = '#{params[:name]}'") # expect: injection
    ActiveRecord::Base.connection.execute("DELETE FROM sessions WHERE user = '" + params[:user] + "'") # expect: injection
  end

  def ping
    system("ping -c 1 #{params[:host]}") # expect: command-injection
    `nslookup #{params[:host]}` # expect: command-injection
  end

  def download
    send_file("/srv/files/#{params[:name]}") # expect: path-traversal
    File.read(File.join("/srv/files", params[:name])) # expect: path-traversal
  end

  def load
    Marshal.load(request.body.read) # expect: unsafe-deserialization
    YAML.load(params[:state]) # expect: unsafe-deserialization
  end

  def fetch
    Net::HTTP.get(URI(params[:url])) # expect: ssrf
  end

  def show
    render html: "<b>#{params[:name]}</b>".html_safe # expect: xss
  end

  def digest(password)
    Digest::MD5.hexdigest(password) # expect: weak-crypto
  end

  def login(sid)
    cookies[:session] = sid # expect: insecure-cookie
  end
end
